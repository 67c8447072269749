import type { FastifyReply, FastifyRequest } from 'fastify';
import { AttemptList } from '../lists/index.js';
import { ATTEMPT_LIST_LIMITS } from '../lists/index.js';
import { ValidationError, describe } from '../core/index.js';
import { iidyWantsJson as wantsJson } from './http-errors.js';
import { useJsonBodyParser } from './json-body.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

/**
 * iidy's HTTP face under `/iidy/v1/` (https://github.com/manniwood/iidy, as its README shows it):
 * same paths, same replies (`ADDED n`, `INCREMENTED n`, `DELETED n`, `Not found.`, lines of `item attempts`,
 * `X-IIDY-Last-Item`), text/plain or JSON picked by the request's Content-Type, without its flaws:
 * an item may contain `/` (the item is the rest of the path), a bad `count` is a 400, and a
 * database error is a 5xx, never an empty list.
 *
 * Increments take iidy's own paths (`/iidy/v1/increment/lists/...`, `/iidy/v1/increment/batch/...`)
 * and the `?action=increment` of its older versions. In the text format an item is a line: an item
 * with a line break (CR or LF) is refused in text requests and a text page that would hold one is
 * refused (JSON carries any item), so a text client can always split a page on line ends.
 */
export const iidyRoutes: RouteFamily = (app, ctx) => {
  const lists = new AttemptList(ctx.pool, { schema: ctx.schema });

  // iidy treats any other Content-Type as text/plain: so do we (in this scope only).
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  // iidy clients send Content-Type: application/json with no body on single-item calls.
  useJsonBodyParser(app, { allowEmpty: true });
  // Errors: the service's handler answers iidy's form under /iidy/ (http-errors.ts sendError).

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
  // Documented, not validated by the schema: itemsFrom() checks it and names `items` in errors.
  const itemsBody = {
    description: 'text/plain: one item per line (an empty body is no item); JSON: {"items": [...]}',
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
      checkTextItem(request, item);
      if (request.query.action === 'increment') {
        return sendCount(request, reply, 200, 'incremented', await lists.incrementOne(list, item));
      }
      return sendCount(request, reply, 201, 'added', await lists.insertOne(list, item));
    },
  );

  app.post<{ Params: { list: string; '*': string } }>(
    '/iidy/v1/increment/lists/:list/*',
    {
      schema: routeSchema({
        summary: 'Add one attempt to an item (INCREMENTED n: 1, or 0 when missing)',
        tags: ['iidy'],
        params: itemParams,
        produces: textOrJson,
        response: { 200: countReply('incremented') },
      }),
    },
    async (request, reply) => {
      const { list, '*': item } = request.params;
      checkTextItem(request, item);
      return sendCount(request, reply, 200, 'incremented', await lists.incrementOne(list, item));
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
      checkTextItem(request, item);
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
      checkTextItem(request, item);
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
        bodyDoc: itemsBody,
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

  app.post<{ Params: { list: string } }>(
    '/iidy/v1/increment/batch/lists/:list',
    {
      schema: routeSchema({
        summary: 'Add one attempt to each item of a batch (INCREMENTED n: items found)',
        tags: ['iidy'],
        params: listParams,
        bodyDoc: itemsBody,
        consumes: textOrJson,
        produces: textOrJson,
        response: { 200: countReply('incremented') },
      }),
    },
    async (request, reply) => {
      const n = await lists.incrementBatch(request.params.list, itemsFrom(request));
      return sendCount(request, reply, 200, 'incremented', n);
    },
  );

  app.delete<{ Params: { list: string } }>(
    '/iidy/v1/batch/lists/:list',
    {
      schema: routeSchema({
        summary: 'Delete a batch of items (DELETED n)',
        tags: ['iidy'],
        params: listParams,
        bodyDoc: itemsBody,
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
          'A keyset page: lines `item attempts` (JSON {"listentries": [...]}), header X-IIDY-Last-Item (percent-encoded)',
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
      const json = wantsJson(request);
      if (!json) {
        const unprintable = entries.find((e) => LINE_BREAK.test(e.item));
        if (unprintable) {
          throw new ValidationError(
            'content-type',
            `the item ${describe(unprintable.item)} contains a line break, which a text/plain page cannot carry: read this list with Content-Type: application/json`,
          );
        }
      }
      const last = entries[entries.length - 1];
      // Always percent-encoded (a header cannot carry every item): decode it, always.
      if (last) void reply.header('x-iidy-last-item', encodeURIComponent(last.item));
      if (json) {
        return reply.type('application/json; charset=utf-8').send({ listentries: entries });
      }
      return reply
        .type('text/plain; charset=utf-8')
        .send(entries.map((e) => `${e.item} ${e.attempts}\n`).join(''));
    },
  );
};

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

const LINE_BREAK = /[\r\n]/;

/**
 * In the text format an item is a line: refuse one with a line break (JSON requests carry any
 * item), so that every item a text client adds can come back in a text page.
 */
function checkTextItem(request: FastifyRequest, item: string): void {
  if (!wantsJson(request) && LINE_BREAK.test(item)) {
    throw new ValidationError(
      'item',
      'contains a line break (CR or LF), which the text format cannot carry: send Content-Type: application/json',
    );
  }
}

/**
 * Items of a batch body: JSON `{"items": [...]}`, or text with one item per line. An empty body
 * is no item (iidy answers `ADDED 0`); any other JSON value, a JSON string included, is refused.
 */
function itemsFrom(request: FastifyRequest): string[] {
  const body = request.body;
  if (body === undefined || body === '') return [];
  if (!wantsJson(request)) {
    // iidy trims the body and splits on newlines; blank lines carry no item.
    const items = String(body)
      .trim()
      .split(/\r?\n/)
      .filter((line) => line.length > 0);
    const i = items.findIndex((item) => item.includes('\r'));
    if (i >= 0) {
      throw new ValidationError(
        `items[${i}]`,
        'contains a carriage return (CR), which the text format cannot carry: send Content-Type: application/json',
      );
    }
    return items;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError(
      'body',
      `must be a JSON object {"items": [...]}, got ${describe(body)}`,
    );
  }
  const items = (body as { items?: unknown }).items;
  if (!Array.isArray(items)) {
    throw new ValidationError('items', `must be an array of strings, got ${describe(items)}`);
  }
  const i = items.findIndex((item) => typeof item !== 'string');
  if (i >= 0)
    throw new ValidationError(`items[${i}]`, `must be a string, got ${describe(items[i])}`);
  return items as string[];
}
