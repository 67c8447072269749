import {
  LeaseManager,
  MAX_LEASE_TTL_MS,
  MIN_LEASE_TTL_MS,
  type LeaseHandle,
} from '../coordination/index.js';
import { ConflictError, NotFoundError } from '../core/index.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

const nameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', description: 'Lease name' } },
};
const ttlMs = {
  type: 'integer',
  minimum: MIN_LEASE_TTL_MS,
  maximum: MAX_LEASE_TTL_MS,
  description: 'Lease time, ms',
};
const token = {
  type: 'string',
  pattern: '^[0-9]{1,19}$',
  description: 'Fencing token of the held lease',
};
const leaseReply = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    owner: { type: 'string' },
    token: { type: 'string' },
    expiresAt: { type: 'string', format: 'date-time' },
  },
};
const errors = { 400: errorSchema, 409: errorSchema, 503: errorSchema };

function leaseJson(l: { name: string; owner: string; token: bigint; expiresAt: Date }) {
  return {
    name: l.name,
    owner: l.owner,
    token: l.token.toString(),
    expiresAt: l.expiresAt.toISOString(),
  };
}

/**
 * Leases with fencing tokens under `/v1/leases/:name`: acquire (409 when held), renew and
 * release by name and token (409 `PGCOORD_STALE_TOKEN` when lost; an `owner` in the body is
 * validated but not compared), and the current holder.
 */
export const leaseRoutes: RouteFamily = (app, ctx) => {
  const leases = new LeaseManager(ctx.pool, { schema: ctx.schema });
  const tags = ['leases'];

  app.post<{ Params: { name: string }; Body: { owner?: string; ttlMs?: number } }>(
    '/v1/leases/:name/acquire',
    {
      schema: routeSchema({
        summary: 'Take the lease if free or expired: a new, larger fencing token; 409 when held',
        tags,
        params: nameParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { owner: { type: 'string' }, ttlMs },
        },
        response: { 200: leaseReply, ...errors },
      }),
    },
    async (request) => {
      const lease = await leases.acquire(request.params.name, request.body ?? {});
      if (!lease) throw new ConflictError(`lease ${JSON.stringify(request.params.name)} is held`);
      return leaseJson(lease);
    },
  );

  for (const op of ['renew', 'release'] as const) {
    app.post<{ Params: { name: string }; Body: { token: string; owner?: string; ttlMs?: number } }>(
      `/v1/leases/:name/${op}`,
      {
        schema: routeSchema({
          summary:
            op === 'renew'
              ? 'Extend a held lease by ttlMs from now; 409 PGCOORD_STALE_TOKEN when lost. Acts on name and token: owner, if given, is not compared; the reply has the recorded owner'
              : 'Give a held lease up; 409 PGCOORD_STALE_TOKEN when lost. Acts on name and token: owner, if given, is not compared',
          tags,
          params: nameParams,
          body: {
            type: 'object',
            required: ['token'],
            additionalProperties: false,
            properties:
              op === 'renew'
                ? { token, owner: { type: 'string' }, ttlMs }
                : { token, owner: { type: 'string' } },
          },
          response: {
            200:
              op === 'renew'
                ? leaseReply
                : { type: 'object', properties: { released: { const: true } } },
            ...errors,
          },
        }),
      },
      async (request) => {
        const body = request.body;
        // Name and token identify the lease; a given owner is validated, not compared, and
        // the reply carries the owner recorded at acquire.
        const lease: LeaseHandle = {
          name: request.params.name,
          token: BigInt(body.token),
          ...(body.owner === undefined ? {} : { owner: body.owner }),
        };
        if (op === 'renew') {
          return leaseJson(
            await leases.renew(lease, body.ttlMs === undefined ? {} : { ttlMs: body.ttlMs }),
          );
        }
        await leases.release(lease);
        return { released: true as const };
      },
    );
  }

  app.get(
    '/v1/leases',
    {
      schema: routeSchema({
        summary:
          'Leases held now (leaders included), by name, at most 200, with the ms each has left',
        tags,
        response: {
          200: {
            type: 'object',
            properties: {
              leases: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { ...leaseReply.properties, remainingMs: { type: 'integer' } },
                },
              },
            },
          },
          ...errors,
        },
      }),
    },
    async () => ({
      leases: (await leases.list()).map((l) => ({ ...leaseJson(l), remainingMs: l.remainingMs })),
    }),
  );

  app.get<{ Params: { name: string } }>(
    '/v1/leases/:name',
    {
      schema: routeSchema({
        summary: 'The current holder; 404 when the lease is free',
        tags,
        params: nameParams,
        response: { 200: leaseReply, 404: errorSchema, ...errors },
      }),
    },
    async (request) => {
      const h = await leases.holder(request.params.name);
      if (!h) throw new NotFoundError(`lease ${JSON.stringify(request.params.name)} is free`);
      return leaseJson({ name: request.params.name, ...h });
    },
  );
};
