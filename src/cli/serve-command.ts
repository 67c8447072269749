import type pg from 'pg';
import { createPool, redactConnectionString } from '../core/index.js';
import { migrate } from '../core/index.js';
import { createLogger, createServer, resolveServerSettings } from '../server/index.js';
import { ClusterPool } from '../cluster/index.js';
import type { RouteFamily, ServicePool } from '../server/index.js';
import { checkDatabaseUrl } from './database.js';
import { EmbeddedDatabase } from './embedded-database.js';
import { onStopRequest, signalExitCode, type StopSignal } from './stop-requests.js';

/** Options of `pgcoord serve`. */
export interface ServeOptions {
  host?: string;
  port?: number;
  databaseUrl?: string;
  dataDir: string;
  schema?: string;
  /** Size of the service pool. Default 20. */
  poolMax?: number;
  /** Refuse every write with 403 (`--read-only`). Default false (env `PGCOORD_READ_ONLY`). */
  readOnly?: boolean;
  routes?: RouteFamily[];
  /** Where the service URL and DATABASE_URL lines go. Default stdout. */
  print?: (line: string) => void;
}

/**
 * Runs the HTTP service until SIGINT or SIGTERM (or, when npm launched it, until npm exits): on
 * the server at `databaseUrl` (or `DATABASE_URL`), else on an embedded PostgreSQL in `dataDir`,
 * which a second `serve` on the same folder refuses to touch while this one runs. Shutdown order:
 * stop accepting HTTP, drain in-flight requests, close the pool, stop the embedded database.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(line + '\n'));
  const url = options.databaseUrl
    ? checkDatabaseUrl('--database-url', options.databaseUrl)
    : process.env.DATABASE_URL
      ? checkDatabaseUrl('DATABASE_URL', process.env.DATABASE_URL)
      : undefined;
  // Settings refused (a public --host without a token) before anything starts.
  resolveServerSettings({
    host: options.host,
    port: options.port,
    schema: options.schema,
    readOnly: options.readOnly,
  });
  const logger = createLogger();

  let embedded: EmbeddedDatabase | undefined;
  let pool: (ServicePool & { end(): Promise<void> }) | undefined;
  let stopRequested = false;
  let wake: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  const onSignal = (signal: StopSignal) => {
    if (stopRequested) {
      logger.warn({ signal }, 'second signal: exiting now');
      // With no embedded database there is nothing to stop: exit at once all the same.
      void (embedded?.stop(1_000) ?? Promise.resolve()).finally(() =>
        process.exit(signalExitCode(signal)),
      );
      return;
    }
    stopRequested = true;
    logger.info({ signal }, 'shutting down');
    wake?.();
  };
  const stopListening = onStopRequest(onSignal);
  try {
    let databaseUrl: string;
    if (url) {
      databaseUrl = url;
    } else {
      embedded = await EmbeddedDatabase.start({
        dir: options.dataDir,
        log: (message) => logger.info(message),
      });
      databaseUrl = embedded.url;
    }
    if (stopRequested) return;
    const onPoolError = (err: Error) =>
      // pool.end() resolves before the sockets close, so stopping the database right after can
      // reach a closing client: expected during shutdown, worth a warning only before it.
      stopRequested
        ? logger.debug({ err: err.message }, 'connection closed during shutdown')
        : logger.warn({ err: err.message }, 'idle database connection lost');
    if (isMultiHost(databaseUrl)) {
      // Several hosts (libpq style): the cluster pool finds the primary and follows failovers.
      const cluster = new ClusterPool({
        connectionString: databaseUrl,
        maxConnectionsPerInstance: options.poolMax ?? 20,
        logger,
      });
      cluster.on('error', onPoolError);
      pool = cluster;
    } else {
      pool = createPool(
        {
          connectionString: databaseUrl,
          max: options.poolMax ?? 20,
          application_name: 'pgcoord-serve',
        } as pg.PoolConfig,
        onPoolError,
      );
    }
    const result = await migrate(pool, options.schema ? { schema: options.schema } : {});
    if (result.applied.length > 0) logger.info({ applied: result.applied }, 'migrated');
    const server = await createServer({
      pool,
      logger,
      host: options.host,
      port: options.port,
      schema: options.schema,
      readOnly: options.readOnly,
      routes: options.routes,
    });
    const base = await server.listen();
    embedded?.announce(base);
    print(
      `pgcoord serving ${base} (console at ${base}/, OpenAPI at ${base}/openapi.json${server.settings.readOnly ? ', read-only' : ''})`,
    );
    print(`DATABASE_URL=${embedded ? databaseUrl : redactConnectionString(databaseUrl)}`);
    if (embedded) {
      print(
        `embedded PostgreSQL data in ${embedded.dir} (the URL is also in ${embedded.dir}/database-url)`,
      );
    }
    await stopped;
    await server.close();
  } finally {
    await pool?.end().catch(() => undefined);
    await embedded?.stop();
    stopListening();
    // Nothing to report when nothing started (a refused start says why on stderr).
    if (pool || embedded) logger.info('stopped');
    logger.flush();
  }
}

/** Whether a connection string names several hosts (`postgres://u@h1:5432,h2:5432/db`). */
export function isMultiHost(url: string): boolean {
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(url)?.[1] ?? '';
  return authority.slice(authority.lastIndexOf('@') + 1).includes(',');
}
