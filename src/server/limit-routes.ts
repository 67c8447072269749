import { RateLimiter, MAX_QUOTAS, type RateLimiterOptions } from '../coordination/index.js';
import { RATE_LIMIT_ALGORITHMS } from '../coordination/index.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import { limitDecisionLog } from './limit-decisions.js';
import type { RouteFamily } from './route-context.js';

/** Limiters kept per (name, settings); the oldest is dropped past this many. */
const MAX_LIMITERS = 1000;

const quota = {
  type: 'object',
  required: ['limit', 'periodMs'],
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1 },
    periodMs: { type: 'integer', minimum: 1 },
    burst: { type: 'integer', minimum: 1 },
  },
};

interface ConsumeBody {
  algorithm?: RateLimiterOptions['algorithm'];
  limit?: number;
  periodMs?: number;
  burst?: number;
  quotas?: Array<{ limit: number; periodMs: number; burst?: number }>;
  cost?: number;
  unlogged?: boolean;
}

/**
 * Rate-limit decisions: `POST /v1/limits/:name/:key` with the limiter's settings and a cost.
 * One statement per batch of concurrent decisions (the limiter coalesces them), on the server
 * clock. Replies 200 with the decision (allowed or not) and `RateLimit-*` / `Retry-After` headers.
 */
export const limitRoutes: RouteFamily = (app, ctx) => {
  const limiters = new Map<string, RateLimiter>();
  let allowed = 0;
  let denied = 0;
  const decisions = limitDecisionLog(ctx);

  const limiterFor = (name: string, body: ConsumeBody): RateLimiter => {
    const { cost: _cost, ...settings } = body;
    const id = JSON.stringify([name, settings]);
    let limiter = limiters.get(id);
    if (!limiter) {
      limiter = new RateLimiter(ctx.pool, { ...settings, name, schema: ctx.schema });
      if (limiters.size >= MAX_LIMITERS) limiters.delete(limiters.keys().next().value as string);
      limiters.set(id, limiter);
    }
    return limiter;
  };

  app.post<{ Params: { name: string; key: string }; Body: ConsumeBody }>(
    '/v1/limits/:name/:key',
    {
      schema: routeSchema({
        summary:
          'Take `cost` units from the key of a limiter, or nothing when any quota lacks them',
        tags: ['limits'],
        params: {
          type: 'object',
          required: ['name', 'key'],
          properties: {
            name: { type: 'string', description: 'Limiter name (its keys are its own)' },
            key: { type: 'string', description: 'Who is limited (user, IP, ...)' },
          },
        },
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            algorithm: { type: 'string', enum: [...RATE_LIMIT_ALGORITHMS] },
            limit: { type: 'integer', minimum: 1 },
            periodMs: { type: 'integer', minimum: 1 },
            burst: { type: 'integer', minimum: 1 },
            quotas: { type: 'array', minItems: 1, maxItems: MAX_QUOTAS, items: quota },
            cost: { type: 'integer', minimum: 1, description: 'Default 1' },
            unlogged: { type: 'boolean', description: 'Keep state in an UNLOGGED table' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              allowed: { type: 'boolean' },
              remaining: { type: 'number' },
              retryAfterMs: { type: 'number' },
              resetAfterMs: { type: 'number' },
            },
          },
          400: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (request, reply) => {
      const { name, key } = request.params;
      const body = request.body ?? {};
      const decision = await limiterFor(name, body).consume(key, { cost: body.cost ?? 1 });
      if (decision.allowed) allowed++;
      else denied++;
      decisions.record(name, key, decision.allowed, decision.remaining);
      void reply.header('ratelimit-remaining', String(decision.remaining));
      if (!decision.allowed)
        void reply.header('retry-after', String(Math.ceil(decision.retryAfterMs / 1000)));
      return decision;
    },
  );

  ctx.metrics.addCollector(() => {
    const help = 'Rate-limit decisions made over HTTP, by outcome';
    return [
      {
        name: 'pgcoord_limiter_decisions_total',
        help,
        type: 'counter',
        value: allowed,
        labels: { outcome: 'allowed' },
      },
      {
        name: 'pgcoord_limiter_decisions_total',
        help,
        type: 'counter',
        value: denied,
        labels: { outcome: 'denied' },
      },
    ];
  });
};
