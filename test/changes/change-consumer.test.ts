import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ChangeCapture } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));
const children: ChildProcess[] = [];

afterEach(async () => {
  await Promise.all(
    children.splice(0).map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
});

interface Child {
  proc: ChildProcess;
  name: string;
  handling: number;
  /** Called as soon as the child reports a batch inside its handler (its transaction open). */
  onHandling?: () => void;
}

async function spawnConsumer(group: string, mode: string, name: string): Promise<Child> {
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(here, '../fixtures/change-consumer-process.ts'),
      db.url,
      group,
      mode,
      name,
      '15',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(proc);
  const child: Child = { proc, name, handling: 0 };
  let ready = false;
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      if (l === 'ready') ready = true;
      else if (l.startsWith('handling')) {
        child.handling++;
        child.onHandling?.();
      }
    }
  });
  await waitFor(() => ready, { timeoutMs: 30_000, message: `${name} ready` });
  return child;
}

/**
 * Four changes per key, in statements of 100 rows: INSERT, UPDATE, UPDATE, then DELETE (even
 * keys) or a third UPDATE (odd keys). Returns the number of changes.
 */
async function write(table: string, keys: number): Promise<number> {
  let changes = 0;
  for (let lo = 1; lo <= keys; lo += 100) {
    const hi = Math.min(keys, lo + 99);
    await db.pool.query(
      `INSERT INTO ${table} SELECT g, 0 FROM generate_series($1::int, $2::int) g`,
      [lo, hi],
    );
    await db.pool.query(`UPDATE ${table} SET v = v + 1 WHERE k BETWEEN $1 AND $2`, [lo, hi]);
    await db.pool.query(`UPDATE ${table} SET v = v + 1 WHERE k BETWEEN $1 AND $2`, [lo, hi]);
    await db.pool.query(`DELETE FROM ${table} WHERE k BETWEEN $1 AND $2 AND k % 2 = 0`, [lo, hi]);
    await db.pool.query(`UPDATE ${table} SET v = v + 1 WHERE k BETWEEN $1 AND $2`, [lo, hi]);
    changes += (hi - lo + 1) * 4;
  }
  return changes;
}

async function verify(
  group: string,
  table: string,
  expected: number,
  ordered: boolean,
): Promise<void> {
  await waitFor(
    async () =>
      Number(
        (
          await db.pool.query(`SELECT count(*) FROM effects WHERE grp = $1 AND tbl = $2`, [
            group,
            table,
          ])
        ).rows[0].count,
      ) >= expected,
    { timeoutMs: 90_000, intervalMs: 200, message: `${expected} effects for ${group}` },
  );
  const { rows: c } = await db.pool.query(
    `SELECT count(*)::int AS n, count(DISTINCT change_id)::int AS d FROM effects WHERE grp = $1 AND tbl = $2`,
    [group, table],
  );
  expect(c[0]).toEqual({ n: expected, d: expected });
  // Each key saw exactly its four changes, in the order they were written.
  const { rows: wrong } = await db.pool.query(
    `SELECT k, ops FROM (SELECT k, string_agg(op || v, ',' ORDER BY seq) AS ops FROM effects
                          WHERE grp = $1 AND tbl = $2 GROUP BY k) x
      WHERE ops <> CASE WHEN k % 2 = 0 THEN 'INSERT0,UPDATE1,UPDATE2,DELETE2'
                        ELSE 'INSERT0,UPDATE1,UPDATE2,UPDATE3' END LIMIT 5`,
    [group, table],
  );
  expect(wrong).toEqual([]);
  // Every change exactly once, and each key's changes in write order.
  const { rows: bad } = await db.pool.query(
    `SELECT k FROM (SELECT k, change_id, lag(change_id) OVER (PARTITION BY k ORDER BY seq) AS prev
                      FROM effects WHERE grp = $1 AND tbl = $2) x WHERE prev > change_id LIMIT 5`,
    [group, table],
  );
  expect(bad).toEqual([]);
  if (ordered) {
    const { rows: out } = await db.pool.query(
      `SELECT count(*)::int AS n FROM (SELECT change_id, lag(change_id) OVER (ORDER BY seq) AS prev
                                         FROM effects WHERE grp = $1 AND tbl = $2) x WHERE prev > change_id`,
      [group, table],
    );
    expect(out[0].n).toBe(0);
  }
}

describe('ChangeConsumer across processes', () => {
  it('sets up', async () => {
    await db.pool.query(`CREATE TABLE effects (seq bigserial PRIMARY KEY, grp text, consumer text,
      change_id bigint NOT NULL, op text, k int, v int, tbl text)`);
    await db.pool.query(`CREATE TABLE rows_o (k int PRIMARY KEY, v int)`);
    await db.pool.query(`CREATE TABLE rows_p (k int PRIMARY KEY, v int)`);
    const capture = new ChangeCapture(db.pool);
    await capture.track('rows_o');
    await capture.track('rows_p');
  });

  it('ordered: three processes, one SIGKILLed mid-batch, one connection terminated: every change once, in order', async () => {
    const group = 'ordered';
    const procs = await Promise.all(
      ['cc-a', 'cc-b', 'cc-c'].map((n) => spawnConsumer(group, 'ordered', n)),
    );
    // SIGKILL whichever process first enters its handler, right then (its transaction open);
    // then cut the connections of the next one to do so, also inside its handler.
    let victim: Child | undefined;
    let second: Child | undefined;
    let terminated: Promise<number> | undefined;
    for (const p of procs) {
      p.onHandling = () => {
        if (!victim) {
          victim = p;
          p.proc.kill('SIGKILL');
        } else if (!second && p !== victim) {
          second = p;
          terminated = db.pool
            .query(
              `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = $1`,
              [p.name],
            )
            .then((r) => r.rows[0].n as number);
        }
      };
    }
    const writing = write('rows_o', 5000);
    await waitFor(() => terminated, { timeoutMs: 30_000, message: 'both faults injected' });
    expect(await terminated).toBeGreaterThan(0);
    const killed = victim!;
    const cut = second!;
    const expected = await writing;
    expect(expected).toBe(20_000);
    await verify(group, 'rows_o', expected, true);
    // The process whose connections were cut survived it and kept working.
    expect(cut.proc.exitCode).toBeNull();
    expect(cut.proc.signalCode).toBeNull();
    await db.pool.query(`INSERT INTO rows_o VALUES (100000, 0)`);
    await waitFor(async () => {
      const r = await db.pool.query(`SELECT 1 FROM effects WHERE grp = $1 AND k = 100000`, [group]);
      return r.rowCount === 1;
    });
    const { rows: by } = await db.pool.query(
      `SELECT consumer, count(*)::int AS n FROM effects WHERE grp = $1 GROUP BY consumer`,
      [group],
    );
    expect(by.find((r) => r.consumer === killed.name)?.n ?? 0).toBeLessThan(expected);
    // One active consumer at a time: the work changes hands only on faults (the kill, the cut
    // connections) and lease expiries, not batch by batch.
    const { rows: sw } = await db.pool.query(
      `SELECT count(*)::int AS n FROM (SELECT consumer, lag(consumer) OVER (ORDER BY seq) AS prev
                                         FROM effects WHERE grp = $1) x WHERE consumer <> prev`,
      [group],
    );
    expect(sw[0].n).toBeLessThanOrEqual(6);
  });

  it('consumers down while writes happen: started afterwards, nothing is lost (parallel mode, per-key order)', async () => {
    const group = 'parallel';
    const first = await spawnConsumer(group, 'parallel', 'cc-p0');
    first.proc.kill('SIGKILL');
    const expected = await write('rows_p', 2000);
    const procs = await Promise.all(
      ['cc-p1', 'cc-p2', 'cc-p3'].map((n) => spawnConsumer(group, 'parallel', n)),
    );
    const victim = await waitFor(() => procs.find((p) => p.handling > 0), { timeoutMs: 30_000 });
    victim.proc.kill('SIGKILL');
    await verify(group, 'rows_p', expected, false);
  });
});
