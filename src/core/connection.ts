import os from 'node:os';
import pg from 'pg';

/** Where to connect: a connection string, or a node-postgres client/pool config. */
export type ConnectionInput = string | pg.ClientConfig;

/**
 * Resolves connection settings with every default explicit, so a process without `USER` or
 * `PG*` variables still sends a user name: explicit input first, then `DATABASE_URL`, then the
 * `PG*` variables, then `127.0.0.1:5432`, user `postgres`, database `postgres`.
 */
export function resolveConnectionConfig(input?: ConnectionInput): pg.ClientConfig {
  const env = process.env;
  const base: pg.ClientConfig =
    typeof input === 'string'
      ? { connectionString: input }
      : input !== undefined
        ? { ...input }
        : env.DATABASE_URL
          ? { connectionString: env.DATABASE_URL }
          : {};
  const fromUrl = base.connectionString ? parseUrlParts(base.connectionString) : {};
  const user = base.user ?? fromUrl.user ?? env.PGUSER ?? defaultUser();
  const host = base.host ?? fromUrl.host ?? env.PGHOST ?? '127.0.0.1';
  const database = base.database ?? fromUrl.database ?? env.PGDATABASE ?? 'postgres';
  const port = base.port ?? fromUrl.port ?? (env.PGPORT ? Number(env.PGPORT) : 5432);
  return { ...base, user, host, database, port };
}

function defaultUser(): string {
  try {
    const name = os.userInfo().username;
    // As root there is normally no "root" role on a stock server; postgres is the safe default.
    return name && name !== 'root' ? name : 'postgres';
  } catch {
    return 'postgres';
  }
}

function parseUrlParts(url: string): {
  user?: string;
  host?: string;
  database?: string;
  port?: number;
} {
  try {
    const u = new URL(url);
    const out: { user?: string; host?: string; database?: string; port?: number } = {};
    if (u.username) out.user = decodeURIComponent(u.username);
    // Multi-host URLs (h1,h2) are the cluster pool's business; leave them to pg.
    if (u.hostname && !u.host.includes(',')) out.host = u.hostname.replace(/^\[|\]$/g, '');
    const db = decodeURIComponent(u.pathname.replace(/^\//, ''));
    if (db) out.database = db;
    if (u.port) out.port = Number(u.port);
    const qHost = u.searchParams.get('host');
    if (qHost) out.host = qHost;
    return out;
  } catch {
    return {};
  }
}

/**
 * A `pg.Pool` with explicit defaults and an `'error'` listener, so an idle client dropped by
 * the server never crashes the process. `onError` receives those errors (default: ignored;
 * the next checkout reconnects).
 */
export function createPool(
  input?: ConnectionInput | pg.PoolConfig,
  onError?: (err: Error) => void,
): pg.Pool {
  const pool = new pg.Pool(resolveConnectionConfig(input) as pg.PoolConfig);
  pool.on('error', (err) => onError?.(err));
  return pool;
}

/** Redacts the password of a connection string for logs and errors. */
export function redactConnectionString(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}
