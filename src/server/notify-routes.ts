import { checkText } from '../core/index.js';
import { MAX_CHANNEL_BYTES, Notifier, type JsonValue } from '../listen/index.js';
import { ChannelHub } from './channel-hub.js';
import { errorSchema } from './http-errors.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';
import { closeAllSse, openSse } from './sse.js';

/**
 * The channel rule in bytes (the schema's maxLength counts characters): checked before the
 * notification is sent or the stream starts, so a bad channel is a 400, never a silent stream.
 */
function checkChannel(channel: string): string {
  return checkText('params.channel', channel, { maxBytes: MAX_CHANNEL_BYTES });
}

const channelParams = {
  type: 'object',
  required: ['channel'],
  properties: {
    channel: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_CHANNEL_BYTES,
      description: `LISTEN/NOTIFY channel, used exactly (case kept), at most ${MAX_CHANNEL_BYTES} bytes`,
    },
  },
} as const;

/**
 * `POST /v1/channels/:channel/notifications` sends a notification (coalesced with concurrent
 * senders into one statement); `GET /v1/channels/:channel/events` streams the channel's
 * notifications as Server-Sent Events, all subscribers sharing one LISTEN connection.
 */
export const notifyRoutes: RouteFamily = (app, ctx) => {
  const notifier = new Notifier(ctx.pool, { schema: ctx.schema, largePayloads: true });
  const hub = new ChannelHub(ctx.listenerConnection, ctx.schema);

  app.post<{ Params: { channel: string }; Body: { payload?: JsonValue } }>(
    '/v1/channels/:channel/notifications',
    {
      schema: routeSchema({
        summary: 'Send a notification (pg_notify) on a channel',
        tags: ['notify'],
        params: channelParams,
        body: {
          type: 'object',
          properties: {
            payload: {
              description: 'A string is sent as is; any other JSON value is serialized. Default ""',
            },
          },
          additionalProperties: false,
        },
        response: {
          202: { type: 'object', properties: { sent: { const: true } } },
          400: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (request, reply) => {
      await notifier.notify(checkChannel(request.params.channel), request.body?.payload ?? '');
      return reply.code(202).send({ sent: true });
    },
  );

  app.get<{ Params: { channel: string } }>(
    '/v1/channels/:channel/events',
    {
      schema: routeSchema({
        summary: 'Stream the notifications of a channel (Server-Sent Events, event "notification")',
        tags: ['notify'],
        params: channelParams,
        produces: ['text/event-stream'],
        response: { 200: { type: 'string', description: 'event stream' }, 400: errorSchema },
      }),
    },
    async (request, reply) => {
      const channel = checkChannel(request.params.channel);
      let seq = 0;
      const stream = openSse(request, reply);
      const unsubscribe = await hub.subscribe(channel, (n) => {
        stream.send({ id: String(++seq), event: 'notification', data: n.payload });
      });
      // The client learns it will receive everything sent from now on.
      stream.send({ event: 'ready', data: '' });
      await stream.closed;
      unsubscribe();
    },
  );

  app.addHook('preClose', async () => {
    closeAllSse();
    await hub.stop();
  });

  ctx.metrics.addCollector(() => [
    {
      name: 'pgcoord_sse_subscribers',
      help: 'Open Server-Sent Events subscriptions to channels',
      type: 'gauge',
      value: hub.subscriberCount,
    },
    {
      name: 'pgcoord_listener_reconnects_total',
      help: 'Reconnects of the service LISTEN connection',
      type: 'counter',
      value: hub.reconnects,
    },
    {
      name: 'pgcoord_sse_notifications_delivered_total',
      help: 'Notifications written to SSE subscribers',
      type: 'counter',
      value: hub.delivered,
    },
  ]);
};
