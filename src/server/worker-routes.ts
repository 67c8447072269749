import { AttemptList, ATTEMPT_LIST_LIMITS as L, type LiveWorker } from '../lists/index.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

const workerSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'The worker id (a UUID)' },
    list: { type: 'string' },
    host: { type: 'string' },
    pid: { type: 'integer' },
    concurrency: { type: 'integer' },
    inFlight: { type: 'integer', description: 'Handlers running at its last refresh' },
    startedAt: { type: 'string', format: 'date-time' },
    heartbeatAt: { type: 'string', format: 'date-time', description: 'Its last refresh' },
  },
};
const reply = {
  type: 'object',
  properties: { workers: { type: 'array', items: workerSchema } },
};
const errors = { 400: errorSchema, 503: errorSchema };

/**
 * The live workers (`list.work()` in any process) of the service's schema: `GET /v1/workers`,
 * and those of one list, `GET /v1/lists/:list/workers`. Rows of workers that died without
 * stopping drop out once their horizon (`liveTtlMs`, default 60 s) has passed.
 */
export const workerRoutes: RouteFamily = (app, ctx) => {
  const lists = new AttemptList(ctx.pool, { schema: ctx.schema });
  const tags = ['lists'];

  app.get(
    '/v1/workers',
    {
      schema: routeSchema({
        summary: 'Live workers of every list, by list then start time',
        tags,
        response: { 200: reply, ...errors },
      }),
    },
    async () => ({ workers: (await lists.workers()).map(workerJson) }),
  );

  app.get<{ Params: { list: string } }>(
    '/v1/lists/:list/workers',
    {
      schema: routeSchema({
        summary: 'Live workers of one list, by start time',
        tags,
        params: {
          type: 'object',
          required: ['list'],
          properties: {
            list: { type: 'string', description: `List name, 1 to ${L.maxListBytes} bytes` },
          },
        },
        response: { 200: reply, ...errors },
      }),
    },
    async (request) => ({
      workers: (await lists.workers(request.params.list)).map(workerJson),
    }),
  );

  ctx.metrics.addCollector(async () => {
    const perList = new Map<string, { workers: number; inFlight: number }>();
    for (const w of await lists.workers()) {
      const n = perList.get(w.list) ?? { workers: 0, inFlight: 0 };
      n.workers++;
      n.inFlight += w.inFlight;
      perList.set(w.list, n);
    }
    // Bounded like the list sizes: the first 50 lists by name.
    return [...perList].slice(0, 50).flatMap(([list, n]) => [
      {
        name: 'pgcoord_live_workers',
        help: 'Live workers of a list (first 50 lists by name)',
        type: 'gauge' as const,
        value: n.workers,
        labels: { list },
      },
      {
        name: 'pgcoord_live_workers_in_flight',
        help: 'Handlers running in the live workers of a list, at their last refresh',
        type: 'gauge' as const,
        value: n.inFlight,
        labels: { list },
      },
    ]);
  });
};

function workerJson(w: LiveWorker) {
  return {
    id: w.id,
    list: w.list,
    host: w.host,
    pid: w.pid,
    concurrency: w.concurrency,
    inFlight: w.inFlight,
    startedAt: w.startedAt.toISOString(),
    heartbeatAt: w.heartbeatAt.toISOString(),
  };
}
