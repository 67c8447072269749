import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { InternalError, PgcoordError, coerceError, type ErrorCode } from '../core/index.js';

/**
 * The one place pgcoord error codes become HTTP statuses. Every route throws pgcoord errors (or
 * lets Fastify's validation fail) and this table decides the reply.
 */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  PGCOORD_VALIDATION: 400,
  PGCOORD_NOT_FOUND: 404,
  PGCOORD_CONFLICT: 409,
  PGCOORD_STALE_TOKEN: 409,
  PGCOORD_UNSUPPORTED: 501,
  PGCOORD_CONNECTION: 503,
  PGCOORD_CLOSED: 503,
  PGCOORD_TIMEOUT: 504,
  PGCOORD_DATABASE: 500,
  PGCOORD_MIGRATION: 500,
  PGCOORD_DATABASE_NEWER: 500,
  PGCOORD_INTERNAL: 500,
  PGCOORD_BAD_REQUEST: 400,
  PGCOORD_UNAUTHORIZED: 401,
  PGCOORD_READ_ONLY: 403,
  PGCOORD_NO_ROUTE: 404,
  PGCOORD_PRECONDITION_FAILED: 412,
  PGCOORD_BODY_TOO_LARGE: 413,
  PGCOORD_METHOD_NOT_ALLOWED: 405,
  PGCOORD_URI_TOO_LONG: 414,
};

/** Body of every error reply: a stable code, a one-line message, the field at fault if any. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string; sqlState?: string };
}

/** JSON Schema of {@link ErrorBody}, shared by every route's documented 4xx/5xx replies. */
export const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        field: { type: 'string' },
        sqlState: { type: 'string' },
      },
    },
  },
} as const;

/** An HTTP-only error (authorization, precondition) with its status and a stable code. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** Status and body for anything a handler threw. Never includes a stack trace. */
export function toHttpError(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof HttpError) {
    return {
      status: err.statusCode,
      body: { error: { code: err.code, message: err.message, field: err.field } },
    };
  }
  const fe = err as Partial<FastifyError> & { validationContext?: string };
  if (fe.validation) {
    const first = fe.validation[0];
    const params = (first?.params ?? {}) as Record<string, unknown>;
    let field = pathToField(first?.instancePath ?? '');
    if (typeof params.missingProperty === 'string') {
      field = field ? `${field}.${params.missingProperty}` : params.missingProperty;
    } else if (typeof params.additionalProperty === 'string') {
      field = field ? `${field}.${params.additionalProperty}` : params.additionalProperty;
    }
    const where = fe.validationContext ?? 'request';
    const name = field ? `${where}.${field}` : where;
    return {
      status: 400,
      body: {
        error: {
          code: 'PGCOORD_VALIDATION',
          message: `${name}: ${first?.message ?? 'is invalid'}`,
          field: name,
        },
      },
    };
  }
  if (err instanceof PgcoordError) return fromPgcoord(err);
  // Fastify's own client errors (bad JSON, body too large, unsupported media type) carry a 4xx.
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return {
      status: fe.statusCode,
      body: {
        error: {
          code: fe.statusCode === 413 ? 'PGCOORD_BODY_TOO_LARGE' : 'PGCOORD_BAD_REQUEST',
          message: fe.message ?? 'bad request',
        },
      },
    };
  }
  return fromPgcoord(coerceError(err));
}

function fromPgcoord(err: PgcoordError): { status: number; body: ErrorBody } {
  // Anything unclassified is our bug: say so without leaking internals.
  if (err instanceof InternalError) {
    return {
      status: 500,
      body: { error: { code: 'PGCOORD_INTERNAL', message: 'internal error; see the server log' } },
    };
  }
  const body: ErrorBody = { error: { code: err.code, message: err.message } };
  const argument = (err as { argument?: unknown }).argument;
  if (typeof argument === 'string') body.error.field = argument;
  const sqlState = (err as { sqlState?: unknown }).sqlState;
  if (typeof sqlState === 'string') body.error.sqlState = sqlState;
  return { status: STATUS_BY_CODE[err.code] ?? 500, body };
}

/** `/items/3/name` -> `items[3].name`. */
function pathToField(instancePath: string): string {
  return instancePath
    .split('/')
    .filter(Boolean)
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce(
      (acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part),
      '',
    );
}

/** Fastify error handler: logs server faults, replies with {@link ErrorBody} (see {@link sendError}). */
export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toHttpError(err);
  if (status >= 500) {
    request.log.error(
      { err, code: body.error.code, route: request.routeOptions.url },
      'request failed',
    );
  }
  if (status === 503) void reply.header('retry-after', '1');
  sendError(request, reply, status, body);
}

/**
 * Sends an error reply: {@link ErrorBody} as JSON, or under `/iidy/` iidy's own form (`{"error":
 * message, "code", "field"?}` for a JSON request, the message as a text line otherwise), so every
 * reply of a path, routed or not, has the form its clients parse.
 */
export function sendError(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  body: ErrorBody,
): void {
  if (!request.url.startsWith('/iidy/')) {
    void reply.code(status).type('application/json; charset=utf-8').send(body);
  } else if (iidyWantsJson(request)) {
    void reply
      .code(status)
      .type('application/json; charset=utf-8')
      .send({
        error: body.error.message,
        code: body.error.code,
        ...(body.error.field ? { field: body.error.field } : {}),
      });
  } else {
    void reply.code(status).type('text/plain; charset=utf-8').send(`${body.error.message}\n`);
  }
}

/** iidy picks text or JSON by the request's Content-Type (anything but JSON is text). */
export function iidyWantsJson(request: FastifyRequest): boolean {
  return (
    (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase() ===
    'application/json'
  );
}
