import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { createPool, redactConnectionString } from '../core/index.js';
import { coerceError, ValidationError } from '../core/index.js';

/** Where a command's database comes from, in order of precedence. */
export interface DatabaseChoice {
  url: string | undefined;
  /** `--database-url`, `DATABASE_URL`, `.pgcoord/database-url` (a running `serve`) or `default`. */
  source: 'option' | 'env' | 'serve' | 'default';
}

/**
 * `--database-url`, then `DATABASE_URL`, then the URL a `pgcoord serve` on an embedded database
 * wrote to `<dataDir>/database-url`, then the local server (127.0.0.1:5432, user postgres).
 */
export function chooseDatabase(option: string | undefined, dataDir: string): DatabaseChoice {
  if (option) return { url: checkDatabaseUrl('--database-url', option), source: 'option' };
  if (process.env.DATABASE_URL) {
    return { url: checkDatabaseUrl('DATABASE_URL', process.env.DATABASE_URL), source: 'env' };
  }
  try {
    const url = fs.readFileSync(path.join(path.resolve(dataDir), 'database-url'), 'utf8').trim();
    if (url) return { url, source: 'serve' };
  } catch {
    // No serve has run here.
  }
  return { url: undefined, source: 'default' };
}

/**
 * Refuses what node-postgres would misread: it takes any other string for a path relative to a
 * host named "base" and fails later with `getaddrinfo ENOTFOUND base`, an unreachable database
 * rather than the usage error it is. Accepted: `postgres://` and `postgresql://` URLs (several
 * hosts too), `socket:` URLs and a Unix socket folder (an absolute path). The value itself is
 * never echoed: it may hold a password.
 */
export function checkDatabaseUrl(name: string, url: string): string {
  if (!/^(postgres(ql)?:\/\/|socket:|\/)/i.test(url)) {
    throw new ValidationError(
      name,
      'must be a postgres:// or postgresql:// URL (e.g. postgres://user:password@host:5432/db), a socket: URL or a Unix socket folder',
    );
  }
  return url;
}

/** A small pool for a one-shot command; `application_name` marks it in pg_stat_activity. */
export function commandPool(url: string | undefined, max = 4): pg.Pool {
  return createPool({
    ...(url ? { connectionString: url } : {}),
    max,
    application_name: 'pgcoord-cli',
    connectionTimeoutMillis: 10_000,
  } as pg.PoolConfig);
}

/** Runs `fn` with a pool and closes it after, whatever happens. */
export async function withPool<T>(
  url: string | undefined,
  fn: (pool: pg.Pool) => Promise<T>,
): Promise<T> {
  const pool = commandPool(url);
  try {
    return await fn(pool);
  } catch (err) {
    throw coerceError(err);
  } finally {
    await pool.end().catch(() => undefined);
  }
}

export { redactConnectionString };
