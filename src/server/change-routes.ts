import { ChangeCapture } from '../changes/index.js';
import { ChangeConsumer, type Change } from '../changes/index.js';
import {
  ConflictError,
  NotFoundError,
  ValidationError,
  checkText,
  describe,
} from '../core/index.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';
import { openSse } from './sse.js';

/** The library's limit on group names, in bytes (the schema's maxLength counts characters). */
const MAX_GROUP_BYTES = 200;

const groupReply = {
  type: 'object',
  properties: { group: { type: 'string' }, created: { type: 'boolean' } },
};

const groupParams = {
  type: 'object',
  required: ['group'],
  properties: {
    group: { type: 'string', minLength: 1, maxLength: 200, description: 'Consumer group' },
  },
};

/**
 * Change capture over HTTP: which tables are tracked, the groups with their lag, creating
 * (`PUT /v1/changes/groups/:group`) and dropping (`DELETE`) a group, and
 * `GET /v1/changes/:group/events`, the changes of a consumer group as Server-Sent Events.
 *
 * A group is created explicitly, never by reading it: a typo in a stream URL is a 404, not a
 * lasting group that holds changes back from pruning.
 *
 * Each SSE client is the group's consumer (ordered mode: one at a time per group). A batch's
 * position commits once its events are written to the socket; a client that reconnects with
 * `Last-Event-ID` gets the next changes, and any change at or below that id that comes again
 * (its batch did not commit before the disconnect) is skipped. Events written to the socket
 * just before a disconnect, after their batch committed, are not sent again: the stream is
 * at-least-once up to the socket, like any consumer whose effects are outside the database.
 */
export const changeRoutes: RouteFamily = (app, ctx) => {
  const capture = new ChangeCapture(ctx.pool, { schema: ctx.schema });
  const tags = ['changes'];
  /** The streams' consumers, with the stream each one feeds. */
  const consumers = new Map<ChangeConsumer, { group: string; close(): void }>();
  const checkGroup = (group: string) =>
    checkText('params.group', group, { maxBytes: MAX_GROUP_BYTES });

  app.get(
    '/v1/changes/tables',
    {
      schema: routeSchema({
        summary: 'Tracked tables',
        tags,
        response: { 200: { type: 'object', additionalProperties: true }, 503: errorSchema },
      }),
    },
    async () => ({ tables: await capture.tracked() }),
  );

  app.get(
    '/v1/changes/groups',
    {
      schema: routeSchema({
        summary: 'Consumer groups with their position and lag',
        tags,
        response: { 200: { type: 'object', additionalProperties: true }, 503: errorSchema },
      }),
    },
    async () => ({ groups: await capture.groups() }),
  );

  app.put<{ Params: { group: string }; Body: unknown }>(
    '/v1/changes/groups/:group',
    {
      schema: routeSchema({
        summary:
          'Create a consumer group (201; 200 when it exists): ordered, starting now or at the beginning',
        tags,
        params: groupParams,
        // Optional (a bare PUT creates a group starting now): checked by createBody().
        bodyDoc: {
          type: 'object',
          additionalProperties: false,
          properties: {
            startFrom: {
              type: 'string',
              enum: ['now', 'beginning'],
              description:
                'now (default): changes written after the group exists; beginning: all retained',
            },
          },
        },
        response: {
          200: groupReply,
          201: groupReply,
          400: errorSchema,
          409: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (request, reply) => {
      const group = checkGroup(request.params.group);
      const created = await capture.createGroup(group, createBody(request.body));
      return reply.code(created ? 201 : 200).send({ group, created });
    },
  );

  app.delete<{ Params: { group: string } }>(
    '/v1/changes/groups/:group',
    {
      schema: routeSchema({
        summary:
          'Drop a consumer group (its position and dead letters) and end its streams; `deleted` says whether it existed',
        tags,
        params: groupParams,
        response: {
          200: { type: 'object', properties: { deleted: { type: 'boolean' } } },
          400: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (request) => {
      const group = checkGroup(request.params.group);
      // Its streams end first: a consumer left running would write the group's rows again.
      const ending = [...consumers].filter(([, s]) => s.group === group);
      await Promise.all(
        ending.map(async ([consumer, stream]) => {
          await consumer.stop();
          stream.close();
        }),
      );
      return { deleted: await capture.dropGroup(group) };
    },
  );

  app.get<{ Params: { group: string }; Querystring: { limit?: string } }>(
    '/v1/changes/groups/:group/dead',
    {
      schema: routeSchema({
        summary: 'Dead letters of a group, oldest first (state dead, or replay while queued)',
        tags,
        params: groupParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: {
              type: 'string',
              pattern: '^[0-9]{1,6}$',
              description: '1 to 100000; default 100',
            },
          },
        },
        response: {
          200: { type: 'object', additionalProperties: true },
          400: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (request) => {
      const group = checkGroup(request.params.group);
      const limit = request.query.limit === undefined ? 100 : Number(request.query.limit);
      return { deadLetters: await capture.deadLetters(group, { limit }) };
    },
  );

  app.post<{ Params: { group: string }; Body: { changeIds?: string[] } }>(
    '/v1/changes/groups/:group/dead/replay',
    {
      schema: routeSchema({
        summary:
          'Queue dead letters for delivery again (all of the group when `changeIds` is absent); running consumers take them before new changes',
        tags,
        params: groupParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            changeIds: { type: 'array', items: { type: 'string', pattern: '^[0-9]{1,19}$' } },
          },
        },
        response: {
          200: { type: 'object', properties: { replayed: { type: 'integer' } } },
          400: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (request) => {
      const group = checkGroup(request.params.group);
      const changeIds = request.body?.changeIds;
      return {
        replayed: await capture.replay(group, changeIds === undefined ? {} : { changeIds }),
      };
    },
  );

  app.get<{
    Params: { group: string };
    Headers: { 'last-event-id'?: string };
  }>(
    '/v1/changes/:group/events',
    {
      schema: routeSchema({
        summary:
          'Stream the changes of an existing ordered consumer group (SSE, event "change", id = change id); resume with Last-Event-ID; 404 for an unknown group',
        tags,
        params: groupParams,
        querystring: { type: 'object', additionalProperties: false, properties: {} },
        headers: {
          type: 'object',
          properties: { 'last-event-id': { type: 'string', pattern: '^[0-9]{1,19}$' } },
        },
        produces: ['text/event-stream'],
        response: {
          200: { type: 'string', description: 'event stream' },
          400: errorSchema,
          404: errorSchema,
          409: errorSchema,
        },
      }),
    },
    async (request, reply) => {
      // Checked before the stream starts: a bad name is a 400, not a stream that never delivers.
      const group = checkGroup(request.params.group);
      const status = (await capture.groups()).find((g) => g.group === group);
      if (!status) {
        throw new NotFoundError(
          `no consumer group ${JSON.stringify(group)}: create it with PUT /v1/changes/groups/<group>`,
        );
      }
      if (status.mode !== 'ordered') {
        throw new ConflictError(
          `group ${JSON.stringify(group)} is ${status.mode}; a stream is an ordered consumer`,
        );
      }
      const lastSeen = BigInt(request.headers['last-event-id'] ?? '0');
      const stream = openSse(request, reply);
      const consumer = new ChangeConsumer(ctx.pool, {
        group,
        // A reconnecting client takes the group over soon after the previous one left.
        leaseMs: 3_000,
        pruneIntervalMs: 0,
        // A pino logger is taken as it is: (fields, message).
        logger: request.log,
        handler: async (changes: Change[]) => {
          for (const change of changes) {
            if (BigInt(change.id) <= lastSeen) continue;
            // A gone client fails the batch: it is retried for the next consumer of the group.
            if (!stream.send({ id: change.id, event: 'change', data: JSON.stringify(change) })) {
              throw new Error('the SSE client disconnected');
            }
          }
        },
      });
      consumer.on('error', (err) => request.log.warn({ err: err.message }, 'change stream error'));
      consumers.set(consumer, { group, close: () => stream.close() });
      try {
        await consumer.start();
        stream.send({ event: 'ready', data: '' });
        await stream.closed;
      } finally {
        consumers.delete(consumer);
        await consumer.stop();
        stream.close();
      }
    },
  );

  app.addHook('preClose', async () => {
    await Promise.all([...consumers.keys()].map((c) => c.stop()));
  });

  ctx.metrics.addCollector(async () => {
    const groups = await capture.groups();
    return groups.map((g) => ({
      name: 'pgcoord_change_group_lag',
      help: 'Changes written after a consumer group position (upper bound of what is left to deliver)',
      type: 'gauge' as const,
      value: g.lag,
      labels: { group: g.group, partition: String(g.partition) },
    }));
  });
};

/** The body of a group creation: none, or `{"startFrom": "now" | "beginning"}`. */
function createBody(body: unknown): { startFrom: 'now' | 'beginning' } {
  if (body === undefined) return { startFrom: 'now' };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError('body', `must be an object, got ${describe(body)}`);
  }
  for (const key of Object.keys(body)) {
    if (key !== 'startFrom') throw new ValidationError(`body.${key}`, 'is not a known property');
  }
  const { startFrom = 'now' } = body as { startFrom?: unknown };
  if (startFrom !== 'now' && startFrom !== 'beginning') {
    throw new ValidationError(
      'body.startFrom',
      `must be 'now' or 'beginning', got ${describe(startFrom)}`,
    );
  }
  return { startFrom };
}
