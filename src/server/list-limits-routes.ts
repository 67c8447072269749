// Keys and limits of attempt lists over JSON (migration 0014).
import { AttemptList, MAX_LIST_CONCURRENCY } from '../lists/index.js';
import type { ListLimits } from '../lists/index.js';
import { ATTEMPT_LIST_LIMITS as L } from '../lists/index.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';

const errors = { 400: errorSchema, 409: errorSchema, 503: errorSchema };
const listParams = {
  type: 'object',
  required: ['list'],
  properties: { list: { type: 'string', description: `List name, 1 to ${L.maxListBytes} bytes` } },
};
const concurrencyLimit = { type: 'integer', minimum: 1, maximum: MAX_LIST_CONCURRENCY };
/** A list's limits as stored (see AttemptList.setLimits). */
const limitsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    keyRegex: {
      type: 'string',
      description: 'PostgreSQL regular expression; its first capture group is the key',
    },
    perKey: {
      type: 'object',
      additionalProperties: false,
      properties: {
        concurrency: concurrencyLimit,
        rate: {
          type: 'object',
          required: ['limit', 'periodMs'],
          additionalProperties: false,
          properties: {
            limit: { type: 'integer' },
            periodMs: { type: 'integer' },
            algorithm: { type: 'string' },
            burst: { type: 'integer' },
          },
        },
      },
    },
    concurrency: concurrencyLimit,
  },
};

interface ListParams {
  list: string;
}

/**
 * A list's key rule and limits as JSON under `/v1/lists/:list/limits` (see AttemptList.setLimits):
 * every claim of the list, through any route or process, obeys them.
 */
export const listLimitsRoutes: RouteFamily = (app, ctx) => {
  const lists = new AttemptList(ctx.pool, { schema: ctx.schema });
  const tags = ['lists'];

  app.get<{ Params: ListParams }>(
    '/v1/lists/:list/limits',
    {
      schema: routeSchema({
        summary: "A list's key rule and limits ({} when it has none)",
        tags,
        params: listParams,
        response: { 200: limitsSchema, ...errors },
      }),
    },
    async (request) => lists.limits(request.params.list),
  );

  app.put<{ Params: ListParams; Body: ListLimits }>(
    '/v1/lists/:list/limits',
    {
      schema: routeSchema({
        summary:
          "Store a list's key rule and limits, replacing what it had ({} clears them); every claim obeys them",
        tags,
        params: listParams,
        body: limitsSchema,
        response: { 200: limitsSchema, ...errors },
      }),
    },
    async (request) => {
      await lists.setLimits(request.params.list, request.body);
      return lists.limits(request.params.list);
    },
  );
};
