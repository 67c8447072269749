import type { FastifyReply } from 'fastify';
import { ConsoleCollector, type InternalGet } from './console-collect.js';
import { CONSOLE_CSP, loadConsoleAssets, type ConsoleAsset } from './console-assets.js';
import { ConsoleSampler } from './console-sampler.js';
import { HttpError, errorSchema } from './http-errors.js';
import { limitDecisionLog } from './limit-decisions.js';
import { routeSchema } from './openapi.js';
import type { RouteFamily } from './route-context.js';
import { openSse } from './sse.js';

/** Default time between two console snapshots, in ms. */
export const DEFAULT_CONSOLE_INTERVAL_MS = 1500;

export interface ConsoleRouteOptions {
  /** ms between snapshots. */
  intervalMs: number;
  readOnly: boolean;
  /** How the console reads routes other branches of the service own (workers). */
  internalGet: InternalGet;
}

/**
 * The console: the page at `/` and its files under `/console/` (open without the token: the page
 * asks for it), and `GET /v1/console/events`, one Server-Sent Events stream per page carrying a
 * snapshot per interval (event `snapshot`), after the recent samples (event `history`).
 * `GET /v1/console/snapshot` takes one snapshot on demand (scripts, curl).
 */
export function consoleRoutes(options: ConsoleRouteOptions): RouteFamily {
  return (app, ctx) => {
    const assets = loadConsoleAssets();
    const sampler = new ConsoleSampler(
      new ConsoleCollector(ctx.pool, ctx.schema, options.internalGet),
      ctx.metrics,
      limitDecisionLog(ctx),
      { intervalMs: options.intervalMs, readOnly: options.readOnly },
    );
    const tags = ['console'];

    const send = (reply: FastifyReply, asset: ConsoleAsset) =>
      reply
        .header('content-type', asset.type)
        .header('cache-control', asset.cacheControl)
        .header('content-security-policy', CONSOLE_CSP)
        .header('referrer-policy', 'no-referrer')
        .header('x-frame-options', 'DENY')
        .send(asset.body);

    app.get(
      '/',
      {
        schema: routeSchema({
          summary: 'The console (HTML); its data needs the token when one is set',
          tags,
          public: true,
          produces: ['text/html'],
          response: { 200: { type: 'string' }, 501: errorSchema },
        }),
      },
      async (_request, reply) => {
        if (!assets) {
          throw new HttpError(
            501,
            'PGCOORD_UNSUPPORTED',
            'the console is not built: run `npm run build` in the pgcoord checkout',
          );
        }
        return send(reply, assets.index);
      },
    );

    app.get<{ Params: { file: string } }>(
      '/console/:file',
      {
        schema: routeSchema({
          summary: 'A file of the console (script, style, icon)',
          tags,
          public: true,
          params: { type: 'object', required: ['file'], properties: { file: { type: 'string' } } },
          produces: ['text/javascript', 'text/css', 'image/svg+xml'],
          response: { 200: { type: 'string' }, 404: errorSchema },
        }),
      },
      async (request, reply) => {
        // Only the names read at start: no path reaches the file system.
        const asset = assets?.files.get(request.params.file);
        if (!asset) {
          throw new HttpError(404, 'PGCOORD_NOT_FOUND', 'no such console file');
        }
        return send(reply, asset);
      },
    );

    app.get(
      '/v1/console/snapshot',
      {
        schema: routeSchema({
          summary: 'One console snapshot, taken now (the stream sends one per interval)',
          tags,
          response: { 200: { type: 'object', additionalProperties: true }, 503: errorSchema },
        }),
      },
      async (_request, reply) =>
        reply
          .type('application/json; charset=utf-8')
          .send(JSON.stringify(await sampler.snapshot({ record: false }))),
    );

    app.get(
      '/v1/console/events',
      {
        schema: routeSchema({
          summary:
            'The console feed (SSE): event "history" (recent samples) once, then "snapshot" every interval, computed once for all pages',
          tags,
          produces: ['text/event-stream'],
          response: { 200: { type: 'string', description: 'event stream' } },
        }),
      },
      async (request, reply) => {
        const stream = openSse(request, reply);
        stream.send({ event: 'history', data: JSON.stringify(sampler.samples()) });
        const latest = sampler.latestJson;
        if (latest !== undefined) stream.send({ event: 'snapshot', data: latest });
        const unsubscribe = await sampler.subscribe((json) => {
          stream.send({ event: 'snapshot', data: json });
        });
        await stream.closed;
        unsubscribe();
      },
    );

    app.addHook('preClose', () => sampler.stop());
  };
}
