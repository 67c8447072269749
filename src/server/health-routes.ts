import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

/** `/healthz` (the process is up), `/readyz` (the database answers), `/metrics` (Prometheus). */
export const healthRoutes: RouteFamily = (app, ctx) => {
  app.get(
    '/healthz',
    {
      schema: routeSchema({
        summary: 'Liveness: the process serves HTTP',
        tags: ['health'],
        public: true,
        response: { 200: { type: 'object', properties: { status: { const: 'ok' } } } },
      }),
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: routeSchema({
        summary: 'Readiness: the database answers within 2 s',
        tags: ['health'],
        public: true,
        response: {
          200: { type: 'object', properties: { status: { const: 'ready' } } },
          503: errorSchema,
        },
      }),
    },
    async (_request, reply) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          ctx.pool.query('SELECT 1'),
          new Promise((_resolve, reject) => {
            timer = setTimeout(() => reject(new Error('timeout')), 2_000);
          }),
        ]);
        return { status: 'ready' as const };
      } catch {
        return reply.code(503).send({
          error: { code: 'PGCOORD_CONNECTION', message: 'the database does not answer' },
        });
      } finally {
        clearTimeout(timer);
      }
    },
  );

  app.get(
    '/metrics',
    {
      schema: routeSchema({
        summary: 'Prometheus metrics (text format 0.0.4)',
        tags: ['health'],
        produces: ['text/plain'],
        response: { 200: { type: 'string' } },
      }),
    },
    async (_request, reply) => {
      const text = await ctx.metrics.render();
      return reply.type('text/plain; version=0.0.4; charset=utf-8').send(text);
    },
  );

  ctx.metrics.addCollector(() => {
    const p = ctx.pool;
    // A pg.Pool says its size limit; a ClusterPool's is per instance (see its topology).
    const max = (p as { options?: { max?: number } }).options?.max;
    const help = 'Connections of the service pool';
    return [
      {
        name: 'pgcoord_pool_connections',
        help,
        type: 'gauge',
        value: p.totalCount,
        labels: { state: 'total' },
      },
      {
        name: 'pgcoord_pool_connections',
        help,
        type: 'gauge',
        value: p.idleCount,
        labels: { state: 'idle' },
      },
      {
        name: 'pgcoord_pool_connections',
        help,
        type: 'gauge',
        value: p.totalCount - p.idleCount,
        labels: { state: 'busy' },
      },
      {
        name: 'pgcoord_pool_waiting_requests',
        help: 'Queries waiting for a pool connection',
        type: 'gauge',
        value: p.waitingCount,
      },
      ...(max === undefined
        ? []
        : [
            {
              name: 'pgcoord_pool_max_connections',
              help: 'Size limit of the service pool',
              type: 'gauge' as const,
              value: max,
            },
          ]),
    ];
  });
};
