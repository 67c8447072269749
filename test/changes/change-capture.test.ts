import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fc from 'fast-check';
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ChangeCapture,
  ChangeConsumer,
  Listener,
  quoteIdent,
  ValidationError,
  type Change,
  type ChangeHandler,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const running: ChangeConsumer[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
});

/** A handler that records each change as an effect row in its own transaction. */
function recorder(group: string): ChangeHandler {
  return async (changes, tx) => {
    await tx.query(
      `INSERT INTO effects (grp, change_id, op, tbl, pk, old, new)
       SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::jsonb[])`,
      [
        group,
        changes.map((c) => c.id),
        changes.map((c) => c.op),
        changes.map((c) => `${c.schema}.${c.table}`),
        changes.map((c) => JSON.stringify(c.pk)),
        changes.map((c) => JSON.stringify(c.old)),
        changes.map((c) => JSON.stringify(c.new)),
      ],
    );
  };
}

async function startConsumer(
  options: Partial<ConstructorParameters<typeof ChangeConsumer>[1]> & { group: string },
  pool: pg.Pool = db.pool,
): Promise<ChangeConsumer> {
  const c = new ChangeConsumer(pool, {
    handler: recorder(options.group),
    startFrom: 'beginning',
    pollIntervalMs: 20,
    fullPollIntervalMs: 200,
    pruneIntervalMs: 0,
    ...options,
  });
  c.on('error', () => undefined);
  running.push(c);
  await c.start();
  return c;
}

async function effects(
  group: string,
): Promise<
  Array<{ change_id: string; op: string; tbl: string; pk: unknown; old: unknown; new: unknown }>
> {
  const { rows } = await db.pool.query(
    `SELECT change_id::text, op, tbl, pk, old, new FROM effects WHERE grp = $1 ORDER BY seq`,
    [group],
  );
  return rows;
}

async function lastChangeId(): Promise<string> {
  const { rows } = await db.pool.query(
    `SELECT coalesce(max(id), 0)::text AS id FROM pgcoord.changes`,
  );
  return rows[0].id;
}

describe('ChangeCapture', () => {
  it('sets up the effects table', async () => {
    await db.pool.query(`CREATE TABLE effects (seq bigserial PRIMARY KEY, grp text NOT NULL,
      change_id bigint NOT NULL, op text, tbl text, pk jsonb, old jsonb, new jsonb)`);
  });

  it('captures INSERT/UPDATE/DELETE/TRUNCATE on a quoted mixed-case schema and table with a composite key', async () => {
    const schema = 'My "Sales"';
    const table = 'Order "Lines"';
    await db.pool.query(`CREATE SCHEMA "My ""Sales"""`);
    await db.pool.query(
      `CREATE TABLE "My ""Sales"""."Order ""Lines""" ("OrderId" int, line text, qty int, secret text, PRIMARY KEY ("OrderId", line))`,
    );
    const capture = new ChangeCapture(db.pool);
    const t = await capture.track({ schema, name: table }, { columns: ['qty', 'OrderId'] });
    expect(t.pkColumns).toEqual(['OrderId', 'line']);
    // Installing again is harmless and changes nothing.
    await capture.track({ schema, name: table }, { columns: ['qty', 'OrderId'] });
    expect((await capture.tracked()).filter((x) => x.name === table)).toHaveLength(1);

    const from = await lastChangeId();
    const q = `"My ""Sales"""."Order ""Lines"""`;
    await db.pool.query(`INSERT INTO ${q} VALUES (1, 'a', 2, 's'), (1, 'b', 3, 's')`);
    await db.pool.query(`UPDATE ${q} SET qty = qty + 10 WHERE line = 'a'`);
    await db.pool.query(`DELETE FROM ${q} WHERE line = 'b'`);
    await db.pool.query(`TRUNCATE ${q}`);
    const { rows } = await db.pool.query(
      `SELECT op, schema_name, table_name, pk, old, new FROM pgcoord.changes WHERE id > $1 ORDER BY id`,
      [from],
    );
    expect(rows).toEqual([
      {
        op: 'INSERT',
        schema_name: schema,
        table_name: table,
        pk: { OrderId: 1, line: 'a' },
        old: null,
        new: { qty: 2, OrderId: 1 },
      },
      {
        op: 'INSERT',
        schema_name: schema,
        table_name: table,
        pk: { OrderId: 1, line: 'b' },
        old: null,
        new: { qty: 3, OrderId: 1 },
      },
      {
        op: 'UPDATE',
        schema_name: schema,
        table_name: table,
        pk: { OrderId: 1, line: 'a' },
        old: { qty: 2, OrderId: 1 },
        new: { qty: 12, OrderId: 1 },
      },
      {
        op: 'DELETE',
        schema_name: schema,
        table_name: table,
        pk: { OrderId: 1, line: 'b' },
        old: { qty: 3, OrderId: 1 },
        new: null,
      },
      { op: 'TRUNCATE', schema_name: schema, table_name: table, pk: null, old: null, new: null },
    ]);

    expect(await capture.untrack({ schema, name: table })).toBe(true);
    expect(await capture.untrack({ schema, name: table })).toBe(false);
    const before = await lastChangeId();
    await db.pool.query(`INSERT INTO ${q} VALUES (2, 'c', 1, 's')`);
    expect(await lastChangeId()).toBe(before);
  });

  it('identifies rows of a table without a primary key by the whole row, and honours operations', async () => {
    await db.pool.query(`CREATE TABLE nopk (x int, y text, o int)`);
    const capture = new ChangeCapture(db.pool);
    await capture.track('nopk', { operations: ['UPDATE', 'DELETE'] });
    const from = await lastChangeId();
    await db.pool.query(`INSERT INTO nopk VALUES (1, 'a', 7), (1, 'a', 7)`);
    await db.pool.query(`UPDATE nopk SET y = 'b' WHERE ctid IN (SELECT ctid FROM nopk LIMIT 1)`);
    await db.pool.query(`DELETE FROM nopk`);
    const { rows } = await db.pool.query(
      `SELECT op, pk, old, new FROM pgcoord.changes WHERE id > $1 ORDER BY id`,
      [from],
    );
    expect(rows[0]).toEqual({
      op: 'UPDATE',
      pk: { x: 1, y: 'b', o: 7 },
      old: { x: 1, y: 'a', o: 7 },
      new: { x: 1, y: 'b', o: 7 },
    });
    expect(
      rows.slice(1).sort((p, q) => JSON.stringify(p).localeCompare(JSON.stringify(q))),
    ).toEqual([
      { op: 'DELETE', pk: { x: 1, y: 'a', o: 7 }, old: { x: 1, y: 'a', o: 7 }, new: null },
      { op: 'DELETE', pk: { x: 1, y: 'b', o: 7 }, old: { x: 1, y: 'b', o: 7 }, new: null },
    ]);
  });

  it('captures a partitioned table, a row moving between partitions as DELETE + INSERT', async () => {
    await db.pool.query(`CREATE TABLE parted (id int, region text, v int, PRIMARY KEY (id, region))
                           PARTITION BY LIST (region)`);
    await db.pool.query(`CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu')`);
    await db.pool.query(`CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us')`);
    await new ChangeCapture(db.pool).track('parted', { columns: ['v'] });
    const from = await lastChangeId();
    await db.pool.query(`INSERT INTO parted VALUES (1, 'eu', 1)`);
    await db.pool.query(`UPDATE parted SET v = 2`);
    await db.pool.query(`UPDATE parted SET region = 'us'`);
    await db.pool.query(`DELETE FROM parted`);
    const { rows } = await db.pool.query(
      `SELECT op, table_name, pk, old, new FROM pgcoord.changes WHERE id > $1 ORDER BY id`,
      [from],
    );
    const eu = { id: 1, region: 'eu' };
    const us = { id: 1, region: 'us' };
    expect(rows).toEqual([
      { op: 'INSERT', table_name: 'parted', pk: eu, old: null, new: { v: 1 } },
      { op: 'UPDATE', table_name: 'parted', pk: eu, old: { v: 1 }, new: { v: 2 } },
      { op: 'DELETE', table_name: 'parted', pk: eu, old: { v: 2 }, new: null },
      { op: 'INSERT', table_name: 'parted', pk: us, old: null, new: { v: 2 } },
      { op: 'DELETE', table_name: 'parted', pk: us, old: { v: 2 }, new: null },
    ]);
  });

  it('captures writes made outside the library (psql, or a plain client)', async () => {
    await db.pool.query(
      `CREATE TABLE outside (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int)`,
    );
    await new ChangeCapture(db.pool).track('outside');
    const from = await lastChangeId();
    const sql = `INSERT INTO outside (n) SELECT generate_series(1, 3)`;
    let via = 'psql';
    try {
      await promisify(execFile)('psql', [db.url, '-v', 'ON_ERROR_STOP=1', '-c', sql]);
    } catch {
      via = 'client';
      const c = await db.pool.connect();
      await c.query(sql);
      c.release();
    }
    const { rows } = await db.pool.query(
      `SELECT op, (new->>'n')::int AS n FROM pgcoord.changes WHERE id > $1 AND table_name = 'outside' ORDER BY id`,
      [from],
    );
    expect(rows, via).toEqual([1, 2, 3].map((n) => ({ op: 'INSERT', n })));
  });

  it('round-trips any schema and table name (quotes, capitals, spaces, unicode)', async () => {
    const capture = new ChangeCapture(db.pool);
    // Prefixed so a generated name never hits a real schema (pg_*, pgcoord) or this file's tables.
    const name = (prefix: string) =>
      fc
        .string({ unit: 'grapheme', minLength: 1, maxLength: 20 })
        .map((x) => prefix + x)
        .filter((x) => !x.includes('\u0000') && Buffer.byteLength(x) <= 63 && x.isWellFormed());
    await fc.assert(
      fc.asyncProperty(name('Fz "'), name('t"'), async (schema, table) => {
        const q = `${quoteIdent(schema)}.${quoteIdent(table)}`;
        await db.pool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
        await db.pool.query(`DROP TABLE IF EXISTS ${q}`);
        await db.pool.query(`CREATE TABLE ${q} ("Id" int PRIMARY KEY, "v""x" text)`);
        await capture.track({ schema, name: table });
        const from = await lastChangeId();
        await db.pool.query(`INSERT INTO ${q} VALUES (1, 'a')`);
        const { rows } = await db.pool.query(
          `SELECT schema_name, table_name, pk, new FROM pgcoord.changes WHERE id > $1`,
          [from],
        );
        expect(rows).toEqual([
          { schema_name: schema, table_name: table, pk: { Id: 1 }, new: { Id: 1, 'v"x': 'a' } },
        ]);
        expect(await capture.untrack({ schema, name: table })).toBe(true);
        await db.pool.query(`DROP TABLE ${q}`);
      }),
      // The first found by this property: `$$` and `$&` are patterns in a JS replacement string.
      { numRuns: 15, examples: [['Fz "$$', 't" $&']] },
    );
  });

  it('refuses bad input before any SQL', async () => {
    const capture = new ChangeCapture(db.pool);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.constant(''),
          fc.constant('a\u0000b'),
          fc.string({ minLength: 64, maxLength: 80 }).map((s) => 'x'.repeat(64) + s),
          fc.integer(),
          fc.constant(null),
          fc.record({ schema: fc.constant(''), name: fc.string() }),
        ),
        async (bad) => {
          await expect(capture.track(bad as never)).rejects.toBeInstanceOf(ValidationError);
        },
      ),
      { numRuns: 30 },
    );
    await expect(capture.track('x', { operations: ['MERGE' as never] })).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(capture.track('x', { columns: [] })).rejects.toBeInstanceOf(ValidationError);
    expect(
      () => new ChangeConsumer(db.pool, { group: '', handler: async () => undefined }),
    ).toThrow(ValidationError);
    expect(
      () =>
        new ChangeConsumer(db.pool, {
          group: 'g',
          handler: async () => undefined,
          mode: 'x' as never,
        }),
    ).toThrow(ValidationError);
    expect(
      () =>
        new ChangeConsumer(db.pool, { group: 'g', handler: async () => undefined, batchSize: 0 }),
    ).toThrow(ValidationError);
  });
});

describe('ChangeConsumer', () => {
  it('sets up a tracked table', async () => {
    await db.pool.query(`CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)`);
    await new ChangeCapture(db.pool).track('items');
  });

  it('delivers a change committed late with a lower id than one already delivered (T1/T2)', async () => {
    await startConsumer({ group: 'late' });
    const t1 = await db.pool.connect();
    try {
      await t1.query('BEGIN');
      await t1.query(`INSERT INTO items VALUES (1001, 1)`); // T1 writes first: lower id
      const { rows: r1 } = await t1.query(`SELECT max(id)::text AS id FROM pgcoord.changes`);
      const t1Id = r1[0].id as string;
      await db.pool.query(`INSERT INTO items VALUES (1002, 1)`); // T2 writes and commits
      const t2Id = await lastChangeId();
      expect(BigInt(t2Id)).toBeGreaterThan(BigInt(t1Id));
      // T2 is consumed while T1 is still open.
      await waitFor(async () => (await effects('late')).some((e) => e.change_id === t2Id), {
        message: 'T2 delivered',
      });
      expect((await effects('late')).map((e) => e.change_id)).not.toContain(t1Id);
      const { rows: g } = await db.pool.query(
        `SELECT low_water::text FROM pgcoord.change_groups WHERE group_name = 'late'`,
      );
      expect(BigInt(g[0].low_water)).toBeLessThan(BigInt(t1Id));
      await t1.query('COMMIT'); // then T1 commits
      await waitFor(async () => (await effects('late')).some((e) => e.change_id === t1Id), {
        message: 'T1 delivered after its late commit',
      });
      const ids = (await effects('late')).map((e) => e.change_id);
      expect(ids.filter((id) => id === t1Id || id === t2Id)).toEqual([t2Id, t1Id]);
      expect(new Set(ids).size).toBe(ids.length);
      // Once T1 is final the low-water mark moves past both.
      await db.pool.query(`INSERT INTO items VALUES (1003, 1)`);
      await waitFor(async () => {
        const r = await db.pool.query(
          `SELECT low_water >= $1::bigint AS ok FROM pgcoord.change_groups WHERE group_name = 'late'`,
          [t2Id],
        );
        return r.rows[0].ok as boolean;
      });
    } finally {
      t1.release();
    }
  });

  it('moves past a change whose transaction rolled back', async () => {
    await startConsumer({ group: 'aborted', startFrom: 'now' });
    const t1 = await db.pool.connect();
    try {
      await t1.query('BEGIN');
      await t1.query(`INSERT INTO items VALUES (1101, 1)`);
      await db.pool.query(`INSERT INTO items VALUES (1102, 1)`);
      await waitFor(async () => (await effects('aborted')).length === 1);
      await t1.query('ROLLBACK');
    } finally {
      t1.release();
    }
    await db.pool.query(`INSERT INTO items VALUES (1103, 1)`);
    const last = await lastChangeId();
    await waitFor(async () => {
      const r = await db.pool.query(
        `SELECT low_water >= $1::bigint AS ok, delivered::text AS d FROM pgcoord.change_groups
          WHERE group_name = 'aborted'`,
        [last],
      );
      return r.rows[0].ok && r.rows[0].d === '{}';
    });
    expect((await effects('aborted')).map((e) => e.op)).toEqual(['INSERT', 'INSERT']);
    expect(Number((await effects('aborted'))[0]!.change_id)).toBeLessThanOrEqual(Number(last));
  });

  it('loses nothing from a steady stream of small commits (low-water mark soundness)', async () => {
    // Regression: the low-water mark once trusted snapshot xmax, which PostgreSQL may reuse from
    // an older snapshot; under a steady stream of small commits it skipped changes in flight.
    const c = await startConsumer({ group: 'stream', startFrom: 'now', pollIntervalMs: 5 });
    const from = await lastChangeId();
    const w = await db.pool.connect();
    try {
      for (let i = 0; i < 600; i++) {
        await w.query(
          `INSERT INTO items SELECT g, 0 FROM generate_series($1::int, $1::int + 9) g`,
          [10_000 + i * 10],
        );
      }
    } finally {
      w.release();
    }
    const to = await lastChangeId();
    const expected = Number(to) - Number(from);
    expect(expected).toBe(6000);
    await waitFor(async () => (await effects('stream')).length >= expected, { timeoutMs: 30_000 });
    // Let the low-water mark settle past everything, then check nothing was skipped.
    await waitFor(async () => {
      const r = await db.pool.query(
        `SELECT low_water >= $1::bigint AS ok FROM pgcoord.change_groups WHERE group_name = 'stream'`,
        [to],
      );
      return r.rows[0].ok as boolean;
    });
    const ids = (await effects('stream')).map((e) => Number(e.change_id));
    expect(ids).toHaveLength(expected);
    expect(new Set(ids).size).toBe(expected);
    expect(c.metrics().delivered).toBe(expected);
  });

  it('a group started after the writes gets everything; nothing is lost while it is down', async () => {
    const c = await startConsumer({ group: 'late-start', startFrom: 'now' });
    await c.stop();
    const from = await lastChangeId();
    await db.pool.query(`INSERT INTO items SELECT g, 0 FROM generate_series(1, 1000) g`);
    await db.pool.query(`UPDATE items SET v = v + 1 WHERE id <= 1000 AND id % 2 = 0`);
    await db.pool.query(`DELETE FROM items WHERE id <= 1000 AND id % 5 = 0`);
    const to = await lastChangeId();
    const expected = Number(to) - Number(from);
    expect(expected).toBe(1000 + 500 + 200);
    await startConsumer({ group: 'late-start', startFrom: 'now', batchSize: 300 });
    await waitFor(async () => (await effects('late-start')).length >= expected, {
      timeoutMs: 30_000,
    });
    const ids = (await effects('late-start')).map((e) => e.change_id);
    expect(ids).toHaveLength(expected);
    expect(ids).toEqual([...ids].sort((a, b) => Number(a) - Number(b)));
    expect(Number(ids[0])).toBe(Number(from) + 1);
  });

  it('retries a failing handler, dead-letters the one change that keeps failing, and replays it', async () => {
    let poison = true;
    const calls: number[] = [];
    const base = recorder('dlq');
    const c = await startConsumer({
      group: 'dlq',
      startFrom: 'now',
      maxAttempts: 3,
      retryBaseMs: 5,
      retryMaxMs: 20,
      handler: async (changes, tx, ctx) => {
        calls.push(changes.length);
        if (
          poison &&
          changes.some((ch: Change) => (ch.new as { id?: number } | null)?.id === 2013)
        ) {
          throw new Error('poison 2013');
        }
        await base(changes, tx, ctx);
      },
    });
    const deadLetters: string[] = [];
    c.on('dead-letter', (e) => deadLetters.push(e.changeId));
    await db.pool.query(`INSERT INTO items SELECT g, 0 FROM generate_series(2001, 2030) g`);
    await waitFor(async () => (await effects('dlq')).length === 29, { timeoutMs: 20_000 });
    const capture = new ChangeCapture(db.pool);
    const dead = await capture.deadLetters('dlq');
    expect(dead).toHaveLength(1);
    expect((dead[0]!.change as { new: { id: number } }).new.id).toBe(2013);
    expect(dead[0]!.lastError).toBe('poison 2013');
    expect(deadLetters).toEqual([dead[0]!.changeId]);
    expect(c.metrics().retries).toBeGreaterThanOrEqual(3);
    // Replay once the cause is fixed.
    poison = false;
    expect(await capture.replay('dlq')).toBe(1);
    await waitFor(async () => (await effects('dlq')).length === 30);
    expect(await capture.deadLetters('dlq')).toHaveLength(0);
    const ids = (await effects('dlq')).map((e) => e.change_id);
    expect(new Set(ids).size).toBe(30);
  });

  it('counts a handler that swallowed an SQL error as a failure (its transaction is aborted)', async () => {
    const c = await startConsumer({
      group: 'swallow',
      startFrom: 'now',
      maxAttempts: 2,
      retryBaseMs: 5,
      retryMaxMs: 10,
      handler: async (_changes, tx) => {
        await tx.query('SELECT 1/0').catch(() => undefined);
      },
    });
    await db.pool.query(`INSERT INTO items VALUES (5001, 1)`);
    await waitFor(
      async () => (await new ChangeCapture(db.pool).deadLetters('swallow')).length === 1,
      {
        timeoutMs: 20_000,
      },
    );
    const [dead] = await new ChangeCapture(db.pool).deadLetters('swallow');
    expect(dead!.lastError).toMatch(/aborted/);
    expect(c.metrics().retries).toBeGreaterThanOrEqual(2);
  });

  it('wakes consumers through a shared Listener: a slow-polling consumer gets a change at once', async () => {
    const listener = new Listener({ connection: db.url });
    listener.on('error', () => undefined);
    await listener.start();
    try {
      // Polls once a minute: without the hint it would not see the change within the test.
      const slow = await startConsumer({
        group: 'wake-slow',
        startFrom: 'now',
        pollIntervalMs: 60_000,
        fullPollIntervalMs: 60_000,
        listener,
      });
      // Polls fast and announces what it sees on the listener's channel.
      await startConsumer({ group: 'wake-fast', startFrom: 'now', listener });
      await waitFor(() => listener.channelNames.length === 1);
      await db.pool.query(`INSERT INTO items VALUES (4001, 1)`);
      await waitFor(async () => (await effects('wake-slow')).length === 1, { timeoutMs: 20_000 });
      expect(slow.metrics().delivered).toBe(1);
      await Promise.all(running.splice(0).map((c) => c.stop()));
      expect(listener.channelNames).toEqual([]);
    } finally {
      await listener.stop();
    }
  });

  it('parallel mode shares the work and keeps per-key order', async () => {
    const a = db.newPool({ max: 3 });
    const b = db.newPool({ max: 3 });
    const opts = {
      group: 'par',
      mode: 'parallel' as const,
      partitions: 4,
      concurrency: 2,
      startFrom: 'now' as const,
      batchSize: 50,
    };
    const ca = await startConsumer(opts, a);
    const cb = await startConsumer(opts, b);
    await db.pool.query(`INSERT INTO items SELECT g, 0 FROM generate_series(3001, 3040) g`);
    for (let v = 1; v <= 15; v++) {
      await db.pool.query(`UPDATE items SET v = $1 WHERE id BETWEEN 3001 AND 3040`, [v]);
    }
    const expected = 40 + 40 * 15;
    await waitFor(async () => (await effects('par')).length >= expected, { timeoutMs: 30_000 });
    const rows = await effects('par');
    expect(rows).toHaveLength(expected);
    const byKey = new Map<number, number[]>();
    for (const r of rows) {
      const k = (r.pk as { id: number }).id;
      const v = (r.new as { v: number }).v;
      byKey.set(k, [...(byKey.get(k) ?? []), v]);
    }
    expect(byKey.size).toBe(40);
    for (const vs of byKey.values()) expect(vs).toEqual([...Array(16).keys()]);
    expect(ca.metrics().delivered + cb.metrics().delivered).toBe(expected);
    expect(ca.metrics().delivered).toBeGreaterThan(0);
    expect(cb.metrics().delivered).toBeGreaterThan(0);
  });

  it('prunes what every group passed and bounds what a dead group keeps', async () => {
    const capture = new ChangeCapture(db.pool);
    // Every group above has consumed everything; a stalled group holds the rest back.
    const warnings: string[] = [];
    const stalled = await startConsumer({
      group: 'stalled',
      startFrom: 'beginning',
      retryBaseMs: 3_600_000,
      pruneIntervalMs: 50,
      lagWarning: 10,
      logger: { warn: (m) => warnings.push(m), error: () => undefined },
      handler: async () => {
        throw new Error('stalled');
      },
    });
    const lag = await nextEvent<{ group: string; lag: number }>(stalled, 'lag');
    expect(lag.group).toBe('stalled');
    expect(lag.lag).toBeGreaterThan(10);
    expect(warnings.some((w) => w.includes('"stalled"') && w.includes('lags'))).toBe(true);
    await waitFor(() => stalled.metrics().retries > 0);
    await stalled.stop();
    const before = Number(
      (await db.pool.query(`SELECT count(*) FROM pgcoord.changes`)).rows[0].count,
    );
    expect(before).toBeGreaterThan(0);
    const r1 = await capture.prune();
    expect(r1.deleted).toBe(0); // 'stalled' is at the beginning
    const r2 = await capture.prune({ maxRetentionMs: 1 });
    expect(r2.overrun.some((o) => o.group === 'stalled' && o.skipped > 0)).toBe(true);
    expect(r2.deleted).toBe(before);
    const st = (await capture.groups()).find((g) => g.group === 'stalled')!;
    expect(st.overrunCount).toBeGreaterThan(0);
    expect(await capture.dropGroup('stalled')).toBe(true);
  });
});
