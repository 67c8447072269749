import { AttemptList } from '../lists/index.js';
import type { Claim, InsertItem, ListEntry, PageOptions, ScheduleOptions } from '../lists/index.js';
import { MAX_LIST_CONCURRENCY } from '../lists/index.js';
import { ATTEMPT_LIST_LIMITS as L } from '../lists/index.js';
import { NotFoundError } from '../core/index.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

const errors = { 400: errorSchema, 409: errorSchema, 503: errorSchema };
const listParams = {
  type: 'object',
  required: ['list'],
  properties: { list: { type: 'string', description: `List name, 1 to ${L.maxListBytes} bytes` } },
};
const itemsBody = {
  type: 'object',
  required: ['items'],
  additionalProperties: false,
  properties: {
    items: {
      type: 'array',
      items: { type: 'string' },
      description: `Items, each 1 to ${L.maxItemBytes} bytes; at most ${L.maxBatchItems} per call`,
    },
  },
};
/** runAt / delayMs / priority of an insert, batch-wide or per item (checked by the list). */
const scheduleFields = {
  runAt: {
    type: 'string',
    format: 'date-time',
    description: 'Not claimable before this time (RFC 3339; server clock). Not with delayMs',
  },
  delayMs: {
    type: 'integer',
    description: `Not claimable before this many ms from now (server clock), 0 to ${L.maxDelayMs}`,
  },
  priority: {
    type: 'integer',
    description: `Claims take higher priorities first, ${L.minPriority} to ${L.maxPriority}; default 0`,
  },
};
/** An insert's items: strings, or objects with their own key (migration 0014) and schedule. */
const insertBody = {
  type: 'object',
  required: ['items'],
  additionalProperties: false,
  properties: {
    items: {
      type: 'array',
      items: {
        anyOf: [
          { type: 'string' },
          {
            type: 'object',
            required: ['item'],
            additionalProperties: false,
            properties: { item: { type: 'string' }, key: { type: 'string' }, ...scheduleFields },
          },
        ],
      },
      description: `Items (strings, or objects with their own key and schedule), each 1 to ${L.maxItemBytes} bytes, a key 1 to ${L.maxKeyBytes} bytes; at most ${L.maxBatchItems} per call`,
    },
    ...scheduleFields,
  },
};
/** A schedule as JSON carries it: runAt as an RFC 3339 text. */
interface JsonSchedule {
  runAt?: string;
  delayMs?: number;
  priority?: number;
}
const concurrencyLimit = { type: 'integer', minimum: 1, maximum: MAX_LIST_CONCURRENCY };
/** JSON's runAt text as the Date the list takes (an unreadable text: an invalid Date, refused there). */
function toSchedule<T extends JsonSchedule>(o: T): Omit<T, 'runAt'> & ScheduleOptions {
  const { runAt, ...rest } = o;
  return runAt === undefined ? rest : { ...rest, runAt: new Date(runAt) };
}

const claimRefs = {
  type: 'array',
  items: {
    type: 'object',
    required: ['item', 'token'],
    additionalProperties: false,
    properties: { item: { type: 'string' }, token: { type: 'string', pattern: '^[0-9]{1,19}$' } },
  },
  description: `Claims as returned by a claim, at most ${L.maxClaimsPerCall} per call`,
};
const claimSchema = {
  type: 'object',
  properties: {
    item: { type: 'string' },
    token: { type: 'string' },
    attempts: { type: 'integer' },
    leaseUntil: { type: 'string', format: 'date-time' },
  },
};
const settleReply = {
  type: 'object',
  properties: {
    count: { type: 'integer' },
    stale: { type: 'array', items: { type: 'string' } },
    dead: { type: 'array', items: { type: 'string' } },
    leaseUntil: { type: 'string', format: 'date-time' },
    claims: { type: 'array', items: claimSchema },
    nextSlotMs: { type: 'number' },
  },
};
const leaseMs = {
  type: 'integer',
  minimum: 1,
  maximum: L.maxLeaseMs,
  description: 'Lease length, ms',
};
/** What a claim takes: `limit` (from `minLimit`), `leaseMs`, optional `maxAttempts`. */
function claimOptions(minLimit: number) {
  return {
    type: 'object',
    required: ['limit', 'leaseMs'],
    additionalProperties: false,
    properties: {
      limit: { type: 'integer', minimum: minLimit, maximum: L.maxClaimLimit },
      leaseMs,
      maxAttempts: { type: 'integer', minimum: 1, maximum: L.maxAttempts },
      perKeyConcurrency: {
        ...concurrencyLimit,
        description: "On a list with limits: this claim's tighter per-key concurrency",
      },
      concurrency: {
        ...concurrencyLimit,
        description: "On a list with limits: this claim's tighter list-wide concurrency",
      },
    },
  };
}
const pageQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    after: {
      type: 'string',
      description: 'Items strictly after this one (byte order); default from the start',
    },
    count: {
      type: 'string',
      pattern: '^[0-9]{1,6}$',
      description: `Entries to return, 1 to ${L.maxPageCount}; default 1000`,
    },
  },
};
const pageReply = {
  type: 'object',
  properties: {
    entries: {
      type: 'array',
      items: {
        type: 'object',
        properties: { item: { type: 'string' }, attempts: { type: 'integer' } },
      },
    },
    last: { type: 'string', description: 'Pass as `after` for the next page; absent at the end' },
  },
};

interface ListParams {
  list: string;
}

/**
 * Attempt lists as JSON under `/v1/lists`: batch insert / page / increment / delete, and claims
 * with leases (claim, complete — optionally claiming the next batch in the same round trip —,
 * fail, release, extend), dead items and requeue.
 */
export const listRoutes: RouteFamily = (app, ctx) => {
  const lists = new AttemptList(ctx.pool, { schema: ctx.schema });
  const tags = ['lists'];

  /** A GET route reading a keyset page (`?after=&count=`, default 1000) with `read`. */
  const pageRoute = (
    url: string,
    summary: string,
    read: (list: string, options: PageOptions) => Promise<ListEntry[]>,
  ): void => {
    app.get<{ Params: ListParams; Querystring: { after?: string; count?: string } }>(
      url,
      {
        schema: routeSchema({
          summary,
          tags,
          params: listParams,
          querystring: pageQuery,
          response: { 200: pageReply, ...errors },
        }),
      },
      async (request) => {
        const entries = await read(request.params.list, {
          after: request.query.after ?? '',
          count: request.query.count === undefined ? 1000 : Number(request.query.count),
        });
        return { entries, last: entries[entries.length - 1]?.item };
      },
    );
  };

  app.get(
    '/v1/lists',
    {
      schema: routeSchema({
        summary: 'Every non-empty list with its size',
        tags,
        response: {
          200: {
            type: 'object',
            properties: {
              lists: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { list: { type: 'string' }, size: { type: 'integer' } },
                },
              },
            },
          },
          ...errors,
        },
      }),
    },
    async () => ({ lists: await lists.lists() }),
  );

  app.get<{ Params: ListParams }>(
    '/v1/lists/:list',
    {
      schema: routeSchema({
        summary: 'Size of a list (0 when it does not exist)',
        tags,
        params: listParams,
        response: {
          200: {
            type: 'object',
            properties: { list: { type: 'string' }, size: { type: 'integer' } },
          },
          ...errors,
        },
      }),
    },
    async (request) => ({
      list: request.params.list,
      size: await lists.count(request.params.list),
    }),
  );

  app.post<{
    Params: ListParams;
    Body: JsonSchedule & { items: Array<string | (JsonSchedule & { item: string; key?: string })> };
  }>(
    '/v1/lists/:list/items',
    {
      schema: routeSchema({
        summary:
          'Insert items, optionally keyed, scheduled (runAt / delayMs) and with a priority (idempotent: existing items keep their attempts, key and schedule)',
        tags,
        params: listParams,
        body: insertBody,
        response: {
          200: { type: 'object', properties: { inserted: { type: 'integer' } } },
          ...errors,
        },
      }),
    },
    async (request) => {
      const { items, ...schedule } = request.body;
      const rows = items.map((x): string | InsertItem =>
        typeof x === 'string' ? x : toSchedule(x),
      );
      return { inserted: await lists.insertBatch(request.params.list, rows, toSchedule(schedule)) };
    },
  );

  pageRoute(
    '/v1/lists/:list/items',
    'A keyset page of items with their attempts',
    (list, options) => lists.getBatch(list, options),
  );

  app.get<{ Params: ListParams & { '*': string } }>(
    '/v1/lists/:list/items/*',
    {
      schema: routeSchema({
        summary: 'Attempts of one item (the rest of the path, `/` included); 404 when missing',
        tags,
        params: {
          type: 'object',
          required: ['list', '*'],
          properties: {
            list: { type: 'string' },
            '*': { type: 'string', description: 'The item' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: { item: { type: 'string' }, attempts: { type: 'integer' } },
          },
          404: errorSchema,
          ...errors,
        },
      }),
    },
    async (request) => {
      const { list, '*': item } = request.params;
      const attempts = await lists.getOne(list, item);
      if (attempts === undefined)
        throw new NotFoundError(`no item ${JSON.stringify(item)} in list ${JSON.stringify(list)}`);
      return { item, attempts };
    },
  );

  for (const [op, key] of [
    ['increment', 'incremented'],
    ['delete', 'deleted'],
  ] as const) {
    app.post<{ Params: ListParams; Body: { items: string[] } }>(
      `/v1/lists/:list/items/${op}`,
      {
        schema: routeSchema({
          summary: op === 'increment' ? 'Add one attempt to each item' : 'Delete items',
          tags,
          params: listParams,
          body: itemsBody,
          response: {
            200: { type: 'object', properties: { [key]: { type: 'integer' } } },
            ...errors,
          },
        }),
      },
      async (request) => {
        const { list } = request.params;
        const n =
          op === 'increment'
            ? await lists.incrementBatch(list, request.body.items)
            : await lists.deleteBatch(list, request.body.items);
        return { [key]: n };
      },
    );
  }

  app.post<{
    Params: ListParams;
    Body: {
      limit: number;
      leaseMs: number;
      maxAttempts?: number;
      perKeyConcurrency?: number;
      concurrency?: number;
    };
  }>(
    '/v1/lists/:list/claims',
    {
      schema: routeSchema({
        summary:
          'Claim up to `limit` items for `leaseMs` (each item to exactly one claimer, within the list limits)',
        tags,
        params: listParams,
        body: claimOptions(1),
        response: {
          200: {
            type: 'object',
            properties: {
              claims: { type: 'array', items: claimSchema },
              nextSlotMs: {
                type: 'number',
                description:
                  'On a list with limits, when the claim came short: ms until a slot may free',
              },
            },
          },
          ...errors,
        },
      }),
    },
    async (request) => {
      const r = await lists.completeAndClaim(request.params.list, [], request.body);
      return { claims: r.claims.map(claimJson), nextSlotMs: r.nextSlotMs };
    },
  );

  app.post<{
    Params: ListParams;
    Body: {
      claims: Array<{ item: string; token: string }>;
      next?: {
        limit: number;
        leaseMs: number;
        maxAttempts?: number;
        perKeyConcurrency?: number;
        concurrency?: number;
      };
    };
  }>(
    '/v1/lists/:list/claims/complete',
    {
      schema: routeSchema({
        summary:
          'Complete (delete) claimed items; with `next`, claim the next batch in the same statement',
        tags,
        params: listParams,
        body: {
          type: 'object',
          required: ['claims'],
          additionalProperties: false,
          properties: {
            claims: claimRefs,
            next: claimOptions(0),
          },
        },
        response: { 200: settleReply, ...errors },
      }),
    },
    async (request) => {
      const { list } = request.params;
      const { claims, next } = request.body;
      if (next) {
        const r = await lists.completeAndClaim(list, claims, next);
        return {
          count: r.count,
          stale: r.stale,
          claims: r.claims.map(claimJson),
          nextSlotMs: r.nextSlotMs,
        };
      }
      return lists.complete(list, claims);
    },
  );

  app.post<{
    Params: ListParams;
    Body: {
      claims: Array<{ item: string; token: string }>;
      retryDelayMs?: number;
      maxAttempts?: number;
    };
  }>(
    '/v1/lists/:list/claims/fail',
    {
      schema: routeSchema({
        summary:
          'Fail claimed items: one more attempt, released after `retryDelayMs`; dead at maxAttempts',
        tags,
        params: listParams,
        body: {
          type: 'object',
          required: ['claims'],
          additionalProperties: false,
          properties: {
            claims: claimRefs,
            retryDelayMs: { type: 'integer', minimum: 0, maximum: L.maxLeaseMs },
            maxAttempts: { type: 'integer', minimum: 1, maximum: L.maxAttempts },
          },
        },
        response: { 200: settleReply, ...errors },
      }),
    },
    async (request) => {
      const { claims, ...options } = request.body;
      return lists.fail(request.params.list, claims, options);
    },
  );

  app.post<{ Params: ListParams; Body: { claims: Array<{ item: string; token: string }> } }>(
    '/v1/lists/:list/claims/release',
    {
      schema: routeSchema({
        summary: 'Give claimed items back untouched',
        tags,
        params: listParams,
        body: {
          type: 'object',
          required: ['claims'],
          additionalProperties: false,
          properties: { claims: claimRefs },
        },
        response: { 200: settleReply, ...errors },
      }),
    },
    async (request) => lists.release(request.params.list, request.body.claims),
  );

  app.post<{
    Params: ListParams;
    Body: { claims: Array<{ item: string; token: string }>; leaseMs: number };
  }>(
    '/v1/lists/:list/claims/extend',
    {
      schema: routeSchema({
        summary: 'Renew the lease of claimed items for `leaseMs` from now',
        tags,
        params: listParams,
        body: {
          type: 'object',
          required: ['claims', 'leaseMs'],
          additionalProperties: false,
          properties: { claims: claimRefs, leaseMs },
        },
        response: { 200: settleReply, ...errors },
      }),
    },
    async (request) => {
      const r = await lists.extend(request.params.list, request.body.claims, {
        leaseMs: request.body.leaseMs,
      });
      return { count: r.count, stale: r.stale, leaseUntil: r.leaseUntil?.toISOString() };
    },
  );

  pageRoute(
    '/v1/lists/:list/dead',
    'A keyset page of dead items (attempts reached maxAttempts)',
    (list, options) => lists.dead(list, options),
  );

  app.post<{ Params: ListParams; Body: { items?: string[] } }>(
    '/v1/lists/:list/dead/requeue',
    {
      schema: routeSchema({
        summary: 'Make dead items claimable again (all of them when `items` is absent)',
        tags,
        params: listParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { items: { type: 'array', items: { type: 'string' } } },
        },
        response: {
          200: { type: 'object', properties: { requeued: { type: 'integer' } } },
          ...errors,
        },
      }),
    },
    async (request) => ({
      requeued: await lists.requeue(request.params.list, request.body?.items),
    }),
  );

  ctx.metrics.addCollector(async () => {
    // Bounded: sizes of at most 50 lists per scrape (counting is O(rows)).
    const all = (await lists.lists()).slice(0, 50);
    return all.map((l) => ({
      name: 'pgcoord_list_items',
      help: 'Items in an attempt list (first 50 lists by name)',
      type: 'gauge' as const,
      value: l.size,
      labels: { list: l.list },
    }));
  });
};

function claimJson(c: Claim): {
  item: string;
  token: string;
  attempts: number;
  leaseUntil: string;
} {
  return {
    item: c.item,
    token: c.token,
    attempts: c.attempts,
    leaseUntil: c.leaseUntil.toISOString(),
  };
}
