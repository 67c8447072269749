import { createHash } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import {
  KvStore,
  MAX_KV_KEY_BYTES,
  MAX_KV_VALUE_BYTES,
  MAX_TTL_MS,
} from '../coordination/index.js';
import { errorSchema, HttpError } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

const keyParams = {
  type: 'object',
  required: ['*'],
  properties: {
    '*': {
      type: 'string',
      description: `The key: the rest of the path, 1 to ${MAX_KV_KEY_BYTES} bytes`,
    },
  },
};
const errors = { 400: errorSchema, 503: errorSchema };

/** Strong ETag of a value: its SHA-256, so equal values have equal tags across servers. */
export function etagOf(value: string): string {
  return `"${createHash('sha256').update(value, 'utf8').digest('base64url')}"`;
}

/**
 * The key-value store under `/v1/kv/<key>`: GET (with ETag), PUT (with `If-Match` for
 * compare-and-set, `If-None-Match: *` for create-only; 412 when the precondition fails), DELETE.
 * Expiry is on the server clock (`ttlMs` in the body).
 */
export const kvRoutes: RouteFamily = (app, ctx) => {
  const kv = new KvStore(ctx.pool, { schema: ctx.schema });
  const tags = ['kv'];

  app.get<{ Params: { '*': string } }>(
    '/v1/kv/*',
    {
      schema: routeSchema({
        summary: 'Read a key; ETag header for compare-and-set; 404 when missing or expired',
        tags,
        params: keyParams,
        response: {
          200: {
            type: 'object',
            properties: { key: { type: 'string' }, value: { type: 'string' } },
          },
          404: errorSchema,
          ...errors,
        },
      }),
    },
    async (request, reply) => {
      const key = request.params['*'];
      const value = await kv.get(key);
      if (value === undefined) return notFound(reply, key);
      void reply.header('etag', etagOf(value));
      return { key, value };
    },
  );

  app.put<{
    Params: { '*': string };
    Body: { value: string; ttlMs?: number };
    Headers: { 'if-match'?: string; 'if-none-match'?: string };
  }>(
    '/v1/kv/*',
    {
      schema: routeSchema({
        summary:
          'Write a key; If-Match: <etag> = only if unchanged, If-None-Match: * = only if absent (412 otherwise)',
        tags,
        params: keyParams,
        headers: {
          type: 'object',
          properties: {
            'if-match': { type: 'string', description: 'ETag the live value must have' },
            'if-none-match': {
              type: 'string',
              const: '*',
              description: 'Write only if the key is absent or expired',
            },
          },
        },
        body: {
          type: 'object',
          required: ['value'],
          additionalProperties: false,
          properties: {
            value: { type: 'string', description: `At most ${MAX_KV_VALUE_BYTES} bytes` },
            ttlMs: {
              type: 'integer',
              minimum: 1,
              maximum: MAX_TTL_MS,
              description: 'Expire after this many ms; default never',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: { key: { type: 'string' }, written: { const: true } },
          },
          412: errorSchema,
          ...errors,
        },
      }),
    },
    async (request, reply) => {
      const key = request.params['*'];
      const { value, ttlMs } = request.body;
      const ifMatch = request.headers['if-match'];
      const ifNoneMatch = request.headers['if-none-match'];
      const options = ttlMs === undefined ? {} : { ttlMs };
      if (ifNoneMatch === '*') {
        if (!(await kv.checkAndSet(key, undefined, value, options)))
          throw precondition('the key exists');
      } else if (ifMatch !== undefined) {
        // The tag names a value; compare-and-set on that value decides atomically.
        const current = await kv.get(key);
        const wanted = ifMatch.split(',').map((t) => t.trim());
        if (current === undefined || !(wanted.includes('*') || wanted.includes(etagOf(current)))) {
          throw precondition(
            current === undefined ? 'the key does not exist' : 'the value changed',
          );
        }
        if (!(await kv.checkAndSet(key, current, value, options)))
          throw precondition('the value changed');
      } else {
        await kv.set(key, value, options);
      }
      void reply.header('etag', etagOf(value));
      return { key, written: true as const };
    },
  );

  app.delete<{ Params: { '*': string } }>(
    '/v1/kv/*',
    {
      schema: routeSchema({
        summary: 'Delete a key; `deleted` says whether a live key was there',
        tags,
        params: keyParams,
        response: {
          200: { type: 'object', properties: { deleted: { type: 'boolean' } } },
          ...errors,
        },
      }),
    },
    async (request) => ({ deleted: await kv.delete(request.params['*']) }),
  );
};

function precondition(why: string): HttpError {
  return new HttpError(412, 'PGCOORD_PRECONDITION_FAILED', `precondition failed: ${why}`);
}

function notFound(reply: FastifyReply, key: string): FastifyReply {
  return reply
    .code(404)
    .send({ error: { code: 'PGCOORD_NOT_FOUND', message: `no live key ${JSON.stringify(key)}` } });
}
