import type { FastifyInstance } from 'fastify';
import { ValidationError } from '../core/index.js';
import { HttpError } from './http-errors.js';

/**
 * Parses a JSON request body. Keys that poison prototypes when an object is later merged
 * (`__proto__`, and `constructor` holding a `prototype`) are refused with a ValidationError
 * naming the body, as Fastify's own parser refuses them, but saying why (Fastify answers "Body
 * is not valid JSON" for a well-formed body). The reviver that checks keys runs only when the
 * text could hold such a key (a `__proto__`/`constructor` spelled out, or any `\u` escape).
 */
export function parseJsonBody(text: string): unknown {
  const suspect =
    text.includes('__proto__') || text.includes('constructor') || text.includes('\\u');
  try {
    return suspect ? (JSON.parse(text, refusePoison) as unknown) : (JSON.parse(text) as unknown);
  } catch (err) {
    if (err instanceof ValidationError) throw err;
    throw new ValidationError('body', 'is not valid JSON');
  }
}

function refusePoison(key: string, value: unknown): unknown {
  if (
    key === '__proto__' ||
    (key === 'constructor' &&
      typeof value === 'object' &&
      value !== null &&
      Object.hasOwn(value, 'prototype'))
  ) {
    throw new ValidationError(
      'body',
      `contains a ${JSON.stringify(key)} key (refused: prototype poisoning)`,
    );
  }
  return value;
}

/**
 * Replaces the scope's `application/json` parser with {@link parseJsonBody}. An empty body is a
 * 400, or no body at all with `allowEmpty`.
 */
export function useJsonBodyParser(
  app: FastifyInstance,
  options: { allowEmpty?: boolean } = {},
): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      if (options.allowEmpty) return done(null, undefined);
      return done(
        new HttpError(400, 'PGCOORD_BAD_REQUEST', 'the body is empty but Content-Type is JSON'),
        undefined,
      );
    }
    try {
      done(null, parseJsonBody(text));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}
