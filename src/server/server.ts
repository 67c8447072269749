import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type pg from 'pg';
import { checkInt, type ConnectionInput } from '../core/index.js';
import pino from 'pino';
import { makeTokenCheck } from './auth.js';
import { healthRoutes } from './health-routes.js';
import { changeRoutes } from './change-routes.js';
import { DEFAULT_CONSOLE_INTERVAL_MS, consoleRoutes } from './console-routes.js';
import { iidyRoutes } from './iidy-routes.js';
import { useJsonBodyParser } from './json-body.js';
import { kvRoutes } from './kv-routes.js';
import { leaseRoutes } from './lease-routes.js';
import { limitRoutes } from './limit-routes.js';
import { listLimitsRoutes } from './list-limits-routes.js';
import { listRoutes } from './list-routes.js';
import { notifyRoutes } from './notify-routes.js';
import { workerRoutes } from './worker-routes.js';
import { HttpError, errorHandler, sendError } from './http-errors.js';
import { Metrics } from './metrics.js';
import { RouteTable } from './route-table.js';
import { buildOpenApi, type RouteDoc, type RouteSchema } from './openapi.js';
import type {
  ListenerDialOptions,
  RouteContext,
  RouteFamily,
  ServicePool,
} from './route-context.js';
import {
  resolveServerSettings,
  type ServerSettings,
  type ServerSettingsInput,
} from './server-options.js';

/** Options of {@link createServer}. */
export interface ServerOptions extends ServerSettingsInput {
  /** Pool the routes use: a `pg.Pool` or a `ClusterPool`. Not closed by the server: the caller owns it. */
  pool: ServicePool;
  /**
   * A pino logger, or `false` for none. Default: pino at `PGCOORD_LOG_LEVEL` (default `info`) on
   * stderr. The token, authorization headers and passwords are redacted either way.
   */
  logger?: pino.Logger | false;
  /**
   * Where the dedicated LISTEN connection dials. Default: a ClusterPool's current primary
   * (`connectPrimaryClient`), else the pg.Pool's own settings.
   */
  connection?: ConnectionInput;
  /** Extra route families (tests, embedding applications). */
  routes?: RouteFamily[];
  /** Time between two console snapshots, ms (100 .. 60,000). Default 1500. */
  consoleIntervalMs?: number;
}

/** A configured, not yet listening, pgcoord HTTP service. */
export interface PgcoordServer {
  /** The Fastify instance (for `inject()` in tests or more routes before `listen`). */
  app: FastifyInstance;
  settings: ServerSettings;
  metrics: Metrics;
  /** Binds `settings.host:settings.port`; resolves with the base URL, e.g. `http://127.0.0.1:8080`. */
  listen(): Promise<string>;
  /** Stops accepting, ends open streams, waits for in-flight requests. Idempotent. */
  close(): Promise<void>;
}

/** Longest path parameter the router takes (items may contain '/'), in characters: 414 beyond. */
const MAX_PARAM_LENGTH = 8192;

/** Methods a read-only service still answers. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Paths that redaction removes from every log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'token',
  '*.token',
  'password',
  '*.password',
  'connectionString',
  '*.connectionString',
  'databaseUrl',
  '*.databaseUrl',
];

/** The default logger: JSON lines on stderr, secrets redacted. */
export function createLogger(level = process.env.PGCOORD_LOG_LEVEL ?? 'info'): pino.Logger {
  return pino(
    { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'pgcoord' } },
    pino.destination({ dest: 2, sync: false }),
  );
}

const packageVersion = (() => {
  try {
    const url = new URL('../../package.json', import.meta.url);
    const fallback = new URL('../../../package.json', import.meta.url);
    const file = fs.existsSync(url) ? url : fallback;
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

/**
 * Builds the HTTP service over `options.pool`: health, metrics, OpenAPI and every block's routes.
 * Validates its settings first (a non-loopback host needs a token).
 *
 * @example
 * const server = await createServer({ pool, port: 0 });
 * console.log(await server.listen()); // http://127.0.0.1:41234
 * await server.close();
 */
export async function createServer(options: ServerOptions): Promise<PgcoordServer> {
  const settings = resolveServerSettings(options);
  const consoleIntervalMs = checkInt(
    'consoleIntervalMs',
    options.consoleIntervalMs ?? DEFAULT_CONSOLE_INTERVAL_MS,
    { min: 100, max: 60_000 },
  );
  const logger = options.logger === undefined ? createLogger() : options.logger;
  const app: FastifyInstance = Fastify({
    ...(logger ? { loggerInstance: logger as FastifyBaseLogger } : { logger: false }),
    bodyLimit: settings.bodyLimitBytes,
    // Per-request info lines cost throughput; failures are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    // Items may contain any character, '/' included: keep the path as sent.
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: MAX_PARAM_LENGTH },
    // No type coercion: a body's "5" is not 5 and "a" is not ["a"]. Query strings declare
    // numbers as digit patterns and convert them in the handler.
    ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false } },
    return503OnClosing: true,
    forceCloseConnections: true,
    // Errors the router raises before any route: the usual error body, not Fastify's own.
    frameworkErrors: (err, request, reply) => {
      const path = (request.raw.url ?? '').split('?')[0]!.slice(0, 200);
      if (err.code === 'FST_ERR_BAD_URL') {
        return sendError(request, reply, 400, {
          error: {
            code: 'PGCOORD_BAD_REQUEST',
            message: `the path ${JSON.stringify(path)} has a bad percent-escape: each % must start two hex digits, and the escaped bytes must be UTF-8`,
          },
        });
      }
      if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
        return sendError(request, reply, 414, {
          error: {
            code: 'PGCOORD_URI_TOO_LONG',
            message: `a path parameter is longer than ${MAX_PARAM_LENGTH} characters`,
          },
        });
      }
      return errorHandler(err, request, reply);
    },
  });
  const metrics = new Metrics();
  const ctx: RouteContext = {
    pool: options.pool,
    schema: settings.schema,
    metrics,
    listenerConnection: listenerDialOf(options),
  };
  const routes: RouteDoc[] = [];
  const publicRoutes = new Set<string>();
  const table = new RouteTable();

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const schema = route.schema as RouteSchema | undefined;
    for (const method of methods) {
      routes.push({ method, url: route.url, schema });
      table.add(method, route.url);
      if (schema?.public) publicRoutes.add(route.url);
    }
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allow = table.allowed(path);
    if (allow.length > 0) {
      // A known path, another method: 405 with the methods it takes (RFC 9110).
      void reply.header('allow', allow.join(', '));
      return sendError(request, reply, 405, {
        error: {
          code: 'PGCOORD_METHOD_NOT_ALLOWED',
          message: `${request.method} is not allowed on ${path}; allowed: ${allow.join(', ')}`,
        },
      });
    }
    return sendError(request, reply, 404, {
      error: { code: 'PGCOORD_NO_ROUTE', message: `no route ${request.method} ${path}` },
    });
  });

  if (settings.token !== undefined) {
    const check = makeTokenCheck(settings.token);
    app.addHook('onRequest', async (request) => {
      const url = request.routeOptions.url;
      if (url !== undefined && publicRoutes.has(url)) return;
      if (!check(request.headers.authorization)) {
        throw new HttpError(401, 'PGCOORD_UNAUTHORIZED', 'missing or wrong bearer token');
      }
    });
  }
  if (settings.readOnly) {
    // After the token check: a caller without the token learns nothing more than a 401.
    app.addHook('onRequest', async (request) => {
      if (!SAFE_METHODS.has(request.method)) {
        throw new HttpError(
          403,
          'PGCOORD_READ_ONLY',
          `this service is read-only (--read-only): ${request.method} is refused`,
        );
      }
    });
  }
  // Browsers must take the declared types seriously (iidy sends this too).
  app.addHook('onSend', async (_request, reply, payload) => {
    void reply.header('x-content-type-options', 'nosniff');
    return payload;
  });
  // The console reads a few routes through the service itself (auth and all); those reads are
  // not the service's traffic. The marker is a per-process secret, so a client cannot forge it.
  const internalMarker = randomBytes(16).toString('hex');
  app.addHook('onResponse', async (request, reply) => {
    if (request.headers['x-pgcoord-internal'] === internalMarker) return;
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.observe(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });

  // JSON bodies everywhere: Fastify's parser, but a poisoning key is a 400 that says so.
  useJsonBodyParser(app);

  // Each family in its own encapsulated scope: its content-type parsers and error handler
  // (the iidy routes have both) stay its own.
  for (const family of [
    healthRoutes,
    listRoutes,
    workerRoutes,
    listLimitsRoutes,
    iidyRoutes,
    kvRoutes,
    limitRoutes,
    leaseRoutes,
    notifyRoutes,
    changeRoutes,
    consoleRoutes({
      intervalMs: consoleIntervalMs,
      readOnly: settings.readOnly,
      internalGet: async (url) => {
        const r = await app.inject({
          method: 'GET',
          url,
          headers: {
            'x-pgcoord-internal': internalMarker,
            ...(settings.token === undefined ? {} : { authorization: `Bearer ${settings.token}` }),
          },
        });
        let body: unknown;
        try {
          body = r.json();
        } catch {
          body = undefined;
        }
        return { status: r.statusCode, body };
      },
    }),
    ...(options.routes ?? []),
  ]) {
    await app.register(async (scoped) => family(scoped, ctx));
  }

  let document: Record<string, unknown> | undefined;
  app.get(
    '/openapi.json',
    {
      schema: {
        summary: 'This OpenAPI document, generated from the route schemas',
        tags: ['health'],
        response: { 200: { type: 'object', additionalProperties: true } },
      },
    },
    async () =>
      (document ??= buildOpenApi(routes, {
        title: 'pgcoord',
        version: packageVersion,
        secured: settings.token !== undefined,
      })),
  );

  let closing: Promise<void> | undefined;
  return {
    app,
    settings,
    metrics,
    async listen() {
      await app.listen({ host: settings.host, port: settings.port });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : settings.port;
      const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
      return `http://${host}:${port}`;
    },
    close() {
      closing ??= app.close();
      return closing;
    },
  };
}

function listenerDialOf(options: ServerOptions): ListenerDialOptions {
  if (options.connection !== undefined) return { connection: options.connection };
  const cluster = options.pool as Partial<{ connectPrimaryClient(): Promise<pg.Client> }>;
  if (typeof cluster.connectPrimaryClient === 'function') {
    return { connect: () => cluster.connectPrimaryClient!() };
  }
  return { connection: (options.pool as Partial<pg.Pool>).options as pg.ClientConfig };
}
