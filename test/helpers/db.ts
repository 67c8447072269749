import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { resolveConnectionConfig } from '../../src/core/connection.js';
import { migrate } from '../../src/core/migrator.js';

/** Connection settings of the server under test: DATABASE_URL, else the local server. */
export function serverConfig(): pg.ClientConfig {
  return resolveConnectionConfig(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
}

/** A connection string for `database` on the server under test. */
export function databaseUrl(database: string): string {
  const c = serverConfig();
  const auth = c.password ? `${c.user}:${encodeURIComponent(String(c.password))}` : c.user;
  return `postgres://${auth}@${c.host}:${c.port}/${encodeURIComponent(database)}`;
}

export interface TestDatabase {
  /** Name of this file's own database. */
  name: string;
  /** Connection string of this file's database. */
  url: string;
  /** A small pool on this file's database, migrated into schema `pgcoord`. Closed after the file. */
  pool: pg.Pool;
  /** Creates another pool on this database, closed after the file. */
  newPool(config?: pg.PoolConfig): pg.Pool;
}

/** Runs `sql` on the server's maintenance database with a short-lived client. */
export async function adminQuery(sql: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ ...serverConfig(), database: 'postgres' });
  await client.connect();
  try {
    return await client.query(sql, values);
  } finally {
    await client.end();
  }
}

/** Creates a fresh, empty database and returns its name. */
export async function createDatabase(label: string): Promise<string> {
  const name = `pgcoord_t_${label
    .replace(/[^a-z0-9]+/gi, '_')
    .toLowerCase()
    .slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  await adminQuery(`CREATE DATABASE "${name}" TEMPLATE template0`);
  return name;
}

/** Drops a database, disconnecting whatever still uses it. */
export async function dropDatabase(name: string): Promise<void> {
  await adminQuery(`DROP DATABASE IF EXISTS "${name.replaceAll('"', '""')}" WITH (FORCE)`);
}

/**
 * Gives the calling test file its own fresh database (created before its tests, migrated unless
 * `migrate: false`, dropped after), so files run in parallel and leave nothing behind.
 */
export function useTestDatabase(options: { migrate?: boolean; label?: string } = {}): TestDatabase {
  const pools: pg.Pool[] = [];
  const ctx = {} as TestDatabase;
  const label = options.label ?? path.basename(expectTestPath()).replace(/\.test\.ts$/, '');
  ctx.newPool = (config: pg.PoolConfig = {}) => {
    const pool = new pg.Pool({ connectionString: ctx.url, max: 8, ...config });
    pool.on('error', () => undefined);
    pools.push(pool);
    return pool;
  };
  beforeAll(async () => {
    ctx.name = await createDatabase(label);
    ctx.url = databaseUrl(ctx.name);
    ctx.pool = ctx.newPool();
    if (options.migrate !== false) await migrate(ctx.pool);
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
    if (ctx.name) await dropDatabase(ctx.name);
  });
  return ctx;
}

function expectTestPath(): string {
  return (
    (globalThis as { __vitest_worker__?: { filepath?: string } }).__vitest_worker__?.filepath ??
    'test'
  );
}
