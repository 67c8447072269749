import type { FastifyReply, FastifyRequest } from 'fastify';
import { AttemptList } from '../lists/index.js';
import { ATTEMPT_LIST_LIMITS } from '../lists/index.js';
import { ValidationError } from '../core/index.js';
import { toHttpError } from './http-errors.js';
import { useJsonBodyParser } from './json-body.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

/**
 * iidy's HTTP face under `/iidy/v1/` (REFERENCE.md section 1): same paths, same replies
 * (`ADDED n`, `INCREMENTED n`, `DELETED n`, `Not found.`, lines of `item attempts`,
 * `X-IIDY-Last-Item`), text/plain or JSON picked by the request's Content-Type, without its flaws:
 * an item may contain `/` (the item is the rest of the path), a bad `count` is a 400, and a
 * database error is a 5xx, never an empty list.
 */
export const iidyRoutes: RouteFamily = (app, ctx) => {
  const lists = new AttemptList(ctx.pool, { schema: ctx.schema });

  // iidy treats any other Content-Type as text/plain: so do we (in this scope only).
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  // iidy clients send Content-Type: application/json with no body on single-item calls.
  useJsonBodyParser(app, { allowEmpty: true });
  app.setErrorHandler((err, request, reply) => {
    const { status, body } = toHttpError(err);
    if (status >= 500) request.log.error({ err }, 'iidy request failed');
    if (wantsJson(request)) {
      return reply
        .code(status)
        .type('application/json; charset=utf-8')
        .send({
          error: body.error.message,
          code: body.error.code,
          ...(body.error.field ? { field: body.error.field } : {}),
        });
    }
    return reply.code(status).type('text/plain; charset=utf-8').send(`${body.error.message}\n`);
  });

  const itemParams = {
    type: 'object',
    required: ['list', '*'],
    properties: {
      list: { type: 'string', description: 'List name' },
      '*': { type: 'string', description: 'The item: the rest of the path, `/` included' },
    },
  };
  const listParams = {
    type: 'object',
    required: ['list'],
    properties: { list: { type: 'string', description: 'List name' } },
  };
  const textOrJson = ['text/plain', 'application/json'];
  const countReply = (key: string) => ({
    type: 'object',
    properties: { [key]: { type: 'integer' } },
    description: `text/plain: \`${key.toUpperCase()} n\`; JSON: \`{"${key}": n}\``,
  });
  const itemsBody = {
    description: 'text/plain: one item per line; JSON: {"items": [...]}',
    anyOf: [
      { type: 'string' },
      {
        type: 'object',
        required: ['items'],
        properties: { items: { type: 'array', items: { type: 'string' } } },
      },
    ],
  };
  const action = {
    type: 'object',
    properties: { action: { type: 'string', enum: ['increment'] } },
    additionalProperties: true,
  };

  app.post<{ Params: { list: string; '*': string }; Querystring: { action?: string } }>(
    '/iidy/v1/lists/:list/*',
    {
      schema: routeSchema({
        summary: 'Add one item (201 ADDED n), or with ?action=increment add one attempt',
        tags: ['iidy'],
        params: itemParams,
        querystring: action,
        produces: textOrJson,
        response: { 200: countReply('incremented'), 201: countReply('added') },
      }),
    },
    async (request, reply) => {
      const { list, '*': item } = request.params;
      if (request.query.action === 'increment') {
        return sendCount(request, reply, 200, 'incremented', await lists.incrementOne(list, item));
      }
      return sendCount(request, reply, 201, 'added', await lists.insertOne(list, item));
    },
  );

  app.get<{ Params: { list: string; '*': string } }>(
    '/iidy/v1/lists/:list/*',
    {
      schema: routeSchema({
        summary: 'Attempts of one item (text: `n`; JSON: {"item","attempts"}); 404 `Not found.`',
        tags: ['iidy'],
        params: itemParams,
        produces: textOrJson,
        response: {
          200: {
            type: 'object',
            properties: { item: { type: 'string' }, attempts: { type: 'integer' } },
          },
        },
      }),
    },
    async (request, reply) => {
      const { list, '*': item } = request.params;
      const attempts = await lists.getOne(list, item);
      if (attempts === undefined) {
        return wantsJson(request)
          ? reply.code(404).type('application/json; charset=utf-8').send({ error: 'Not found.' })
          : reply.code(404).type('text/plain; charset=utf-8').send('Not found.\n');
      }
      return wantsJson(request)
        ? reply.type('application/json; charset=utf-8').send({ item, attempts })
        : reply.type('text/plain; charset=utf-8').send(`${attempts}\n`);
    },
  );

  app.delete<{ Params: { list: string; '*': string } }>(
    '/iidy/v1/lists/:list/*',
    {
      schema: routeSchema({
        summary: 'Delete one item (DELETED n)',
        tags: ['iidy'],
        params: itemParams,
        produces: textOrJson,
        response: { 200: countReply('deleted') },
      }),
    },
    async (request, reply) => {
      const { list, '*': item } = request.params;
      return sendCount(request, reply, 200, 'deleted', await lists.deleteOne(list, item));
    },
  );

  app.post<{ Params: { list: string }; Querystring: { action?: string } }>(
    '/iidy/v1/batch/lists/:list',
    {
      schema: routeSchema({
        summary:
          'Add a batch of items (201 ADDED n), or with ?action=increment add one attempt to each',
        tags: ['iidy'],
        params: listParams,
        querystring: action,
        body: itemsBody,
        consumes: textOrJson,
        produces: textOrJson,
        response: { 200: countReply('incremented'), 201: countReply('added') },
      }),
    },
    async (request, reply) => {
      const items = itemsFrom(request);
      if (request.query.action === 'increment') {
        const n = await lists.incrementBatch(request.params.list, items);
        return sendCount(request, reply, 200, 'incremented', n);
      }
      return sendCount(
        request,
        reply,
        201,
        'added',
        await lists.insertBatch(request.params.list, items),
      );
    },
  );

  app.delete<{ Params: { list: string } }>(
    '/iidy/v1/batch/lists/:list',
    {
      schema: routeSchema({
        summary: 'Delete a batch of items (DELETED n)',
        tags: ['iidy'],
        params: listParams,
        body: itemsBody,
        consumes: textOrJson,
        produces: textOrJson,
        response: { 200: countReply('deleted') },
      }),
    },
    async (request, reply) => {
      const n = await lists.deleteBatch(request.params.list, itemsFrom(request));
      return sendCount(request, reply, 200, 'deleted', n);
    },
  );

  app.get<{ Params: { list: string }; Querystring: { count?: string; after_id?: string } }>(
    '/iidy/v1/batch/lists/:list',
    {
      schema: routeSchema({
        summary:
          'A keyset page: lines `item attempts` (JSON {"listentries": [...]}), header X-IIDY-Last-Item',
        tags: ['iidy'],
        params: listParams,
        querystring: {
          type: 'object',
          properties: {
            count: {
              type: 'string',
              description: `Entries to return, 0 to ${ATTEMPT_LIST_LIMITS.maxPageCount} (required)`,
            },
            after_id: {
              type: 'string',
              description: 'Return items after this one; empty = from the start',
            },
          },
        },
        produces: textOrJson,
        response: {
          200: {
            type: 'object',
            properties: {
              listentries: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { item: { type: 'string' }, attempts: { type: 'integer' } },
                },
              },
            },
          },
        },
      }),
    },
    async (request, reply) => {
      const raw = request.query.count;
      if (raw === undefined || raw === '') {
        throw new ValidationError('count', 'Query arg not found: count');
      }
      if (!/^\d+$/.test(raw) || Number(raw) > ATTEMPT_LIST_LIMITS.maxPageCount) {
        throw new ValidationError(
          'count',
          `must be a whole number from 0 to ${ATTEMPT_LIST_LIMITS.maxPageCount}, got ${JSON.stringify(raw.slice(0, 40))}`,
        );
      }
      const count = Number(raw);
      const entries =
        count === 0
          ? []
          : await lists.getBatch(request.params.list, {
              after: request.query.after_id ?? '',
              count,
            });
      const last = entries[entries.length - 1];
      if (last) void reply.header('x-iidy-last-item', encodeHeader(last.item));
      if (wantsJson(request)) {
        return reply.type('application/json; charset=utf-8').send({ listentries: entries });
      }
      return reply
        .type('text/plain; charset=utf-8')
        .send(entries.map((e) => `${e.item} ${e.attempts}\n`).join(''));
    },
  );
};

function wantsJson(request: FastifyRequest): boolean {
  return (
    (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase() ===
    'application/json'
  );
}

function sendCount(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  key: 'added' | 'incremented' | 'deleted',
  n: number,
): FastifyReply {
  if (wantsJson(request)) {
    return reply
      .code(status)
      .type('application/json; charset=utf-8')
      .send({ [key]: n });
  }
  return reply.code(status).type('text/plain; charset=utf-8').send(`${key.toUpperCase()} ${n}\n`);
}

/** Items of a batch body: JSON `{"items": [...]}`, or text with one item per line. */
function itemsFrom(request: FastifyRequest): string[] {
  const body = request.body;
  if (body === undefined || body === null || body === '') return [];
  if (typeof body === 'string') {
    // iidy trims the body and splits on newlines; blank lines carry no item.
    return body
      .trim()
      .split(/\r?\n/)
      .filter((line) => line.length > 0);
  }
  const items = (body as { items?: unknown }).items;
  if (!Array.isArray(items)) throw new ValidationError('body.items', 'must be an array of strings');
  return items as string[];
}

/** Header values cannot carry control characters or non-Latin-1 text: percent-encode those items. */
function encodeHeader(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}
