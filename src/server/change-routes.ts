import { ChangeCapture } from '../changes/index.js';
import { ChangeConsumer, type Change } from '../changes/index.js';
import { checkText } from '../core/index.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';
import { openSse } from './sse.js';

/** The library's limit on group names, in bytes (the schema's maxLength counts characters). */
const MAX_GROUP_BYTES = 200;

const groupParams = {
  type: 'object',
  required: ['group'],
  properties: {
    group: { type: 'string', minLength: 1, maxLength: 200, description: 'Consumer group' },
  },
};

/**
 * Change capture over HTTP: which tables are tracked, the groups with their lag, and
 * `GET /v1/changes/:group/events`, the changes of a consumer group as Server-Sent Events.
 *
 * Each SSE client is the group's consumer (ordered mode: one at a time per group). A batch's
 * position commits once its events are written to the socket; a client that reconnects with
 * `Last-Event-ID` gets the next changes, and any change at or below that id that comes again
 * (its batch did not commit before the disconnect) is skipped. Events written to the socket
 * just before a disconnect, after their batch committed, are not sent again: the stream is
 * at-least-once up to the socket, like any consumer whose effects are outside the database.
 */
export const changeRoutes: RouteFamily = (app, ctx) => {
  const capture = new ChangeCapture(ctx.pool, { schema: ctx.schema });
  const tags = ['changes'];
  const consumers = new Set<ChangeConsumer>();

  app.get(
    '/v1/changes/tables',
    {
      schema: routeSchema({
        summary: 'Tracked tables',
        tags,
        response: { 200: { type: 'object', additionalProperties: true }, 503: errorSchema },
      }),
    },
    async () => ({ tables: await capture.tracked() }),
  );

  app.get(
    '/v1/changes/groups',
    {
      schema: routeSchema({
        summary: 'Consumer groups with their position and lag',
        tags,
        response: { 200: { type: 'object', additionalProperties: true }, 503: errorSchema },
      }),
    },
    async () => ({ groups: await capture.groups() }),
  );

  app.get<{
    Params: { group: string };
    Querystring: { startFrom?: 'now' | 'beginning' };
    Headers: { 'last-event-id'?: string };
  }>(
    '/v1/changes/:group/events',
    {
      schema: routeSchema({
        summary:
          'Stream the changes of a consumer group (SSE, event "change", id = change id); resume with Last-Event-ID',
        tags,
        params: groupParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            startFrom: {
              type: 'string',
              enum: ['now', 'beginning'],
              description: 'Where a NEW group starts (default now)',
            },
          },
        },
        headers: {
          type: 'object',
          properties: { 'last-event-id': { type: 'string', pattern: '^[0-9]{1,19}$' } },
        },
        produces: ['text/event-stream'],
        response: { 200: { type: 'string', description: 'event stream' }, 400: errorSchema },
      }),
    },
    async (request, reply) => {
      // Checked before the stream starts: a bad name is a 400, not a stream that never delivers.
      const group = checkText('params.group', request.params.group, { maxBytes: MAX_GROUP_BYTES });
      const lastSeen = BigInt(request.headers['last-event-id'] ?? '0');
      const stream = openSse(request, reply);
      const consumer = new ChangeConsumer(ctx.pool, {
        group,
        startFrom: request.query.startFrom ?? 'now',
        // A reconnecting client takes the group over soon after the previous one left.
        leaseMs: 3_000,
        pruneIntervalMs: 0,
        logger: {
          warn: (m, meta) => request.log.warn(meta ?? {}, m),
          error: (m, meta) => request.log.error(meta ?? {}, m),
        },
        handler: async (changes: Change[]) => {
          for (const change of changes) {
            if (BigInt(change.id) <= lastSeen) continue;
            // A gone client fails the batch: it is retried for the next consumer of the group.
            if (!stream.send({ id: change.id, event: 'change', data: JSON.stringify(change) })) {
              throw new Error('the SSE client disconnected');
            }
          }
        },
      });
      consumer.on('error', (err) => request.log.warn({ err: err.message }, 'change stream error'));
      consumers.add(consumer);
      try {
        await consumer.start();
        stream.send({ event: 'ready', data: '' });
        await stream.closed;
      } finally {
        consumers.delete(consumer);
        await consumer.stop();
        stream.close();
      }
    },
  );

  app.addHook('preClose', async () => {
    await Promise.all([...consumers].map((c) => c.stop()));
  });

  ctx.metrics.addCollector(async () => {
    const groups = await capture.groups();
    return groups.map((g) => ({
      name: 'pgcoord_change_group_lag',
      help: 'Changes written after a consumer group position (upper bound of what is left to deliver)',
      type: 'gauge' as const,
      value: g.lag,
      labels: { group: g.group, partition: String(g.partition) },
    }));
  });
};
