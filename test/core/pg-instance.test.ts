import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startInstance, type PgInstance } from '../helpers/pg-instance.js';
import { waitFor } from '../helpers/wait-for.js';

// The private-instance helper itself: later blocks' fault tests stand on it.
const instances: PgInstance[] = [];
afterAll(() => instances.forEach((i) => i.destroy()));

async function scalar(url: string, sql: string): Promise<unknown> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const row = (await c.query(sql)).rows[0] as object | undefined;
    return row ? Object.values(row)[0] : undefined;
  } finally {
    await c.end();
  }
}

describe('private PostgreSQL instances', () => {
  it('starts a primary and a streaming standby, and promotes the standby', async () => {
    const primary = await startInstance();
    instances.push(primary);
    const standby = await startInstance({ standbyOf: primary });
    instances.push(standby);
    expect(await scalar(primary.url(), 'SELECT pg_is_in_recovery()')).toBe(false);
    expect(await scalar(standby.url(), 'SELECT pg_is_in_recovery()')).toBe(true);
    await scalar(primary.url(), 'CREATE TABLE t AS SELECT 42 AS v');
    await waitFor(() => scalar(standby.url(), 'SELECT v FROM t').catch(() => undefined), {
      timeoutMs: 15_000,
    });
    primary.stop('fast');
    expect(primary.running()).toBe(false);
    standby.promote();
    expect(await scalar(standby.url(), 'SELECT pg_is_in_recovery()')).toBe(false);
    primary.start();
    expect(primary.running()).toBe(true);
  });
});
