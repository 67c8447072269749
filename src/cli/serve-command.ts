import type pg from 'pg';
import { createPool, redactConnectionString } from '../core/index.js';
import { migrate } from '../core/index.js';
import { createLogger, createServer } from '../server/index.js';
import { ClusterPool } from '../cluster/index.js';
import type { RouteFamily, ServicePool } from '../server/index.js';
import { EmbeddedDatabase } from './embedded-database.js';

/** Options of `pgcoord serve`. */
export interface ServeOptions {
  host?: string;
  port?: number;
  databaseUrl?: string;
  dataDir: string;
  schema?: string;
  /** Size of the service pool. Default 20. */
  poolMax?: number;
  routes?: RouteFamily[];
  /** Where the service URL and DATABASE_URL lines go. Default stdout. */
  print?: (line: string) => void;
}

/**
 * Runs the HTTP service until SIGINT or SIGTERM: on the server at `databaseUrl` (or
 * `DATABASE_URL`), else on an embedded PostgreSQL in `dataDir`. Shutdown order: stop accepting
 * HTTP, drain in-flight requests, close the pool, stop the embedded database.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(line + '\n'));
  const logger = createLogger();
  const url = options.databaseUrl || process.env.DATABASE_URL || undefined;

  let embedded: EmbeddedDatabase | undefined;
  let pool: (ServicePool & { end(): Promise<void> }) | undefined;
  let stopRequested = false;
  let wake: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopRequested) {
      logger.warn({ signal }, 'second signal: exiting now');
      void embedded?.stop(1_000).finally(() => process.exit(130));
      return;
    }
    stopRequested = true;
    logger.info({ signal }, 'shutting down');
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
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
        logger: (e) => logger[e.level]({ instance: e.instance }, e.message),
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
      routes: options.routes,
    });
    const base = await server.listen();
    print(`pgcoord serving ${base} (OpenAPI at ${base}/openapi.json)`);
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
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    logger.info('stopped');
    logger.flush();
  }
}

/** Whether a connection string names several hosts (`postgres://u@h1:5432,h2:5432/db`). */
export function isMultiHost(url: string): boolean {
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(url)?.[1] ?? '';
  return authority.slice(authority.lastIndexOf('@') + 1).includes(',');
}
