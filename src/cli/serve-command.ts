import type pg from 'pg';
import { createPool, redactConnectionString } from '../db/connection.js';
import { migrate } from '../db/migrator.js';
import { createLogger, createServer } from '../server/server.js';
import type { RouteFamily } from '../server/route-context.js';
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
  let pool: pg.Pool | undefined;
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
    pool = createPool(
      {
        connectionString: databaseUrl,
        max: options.poolMax ?? 20,
        application_name: 'pgcoord-serve',
      } as pg.PoolConfig,
      // pool.end() resolves before the sockets close, so stopping the database right after can
      // reach a closing client: expected during shutdown, worth a warning only before it.
      (err) =>
        stopRequested
          ? logger.debug({ err: err.message }, 'connection closed during shutdown')
          : logger.warn({ err: err.message }, 'idle database connection lost'),
    );
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
