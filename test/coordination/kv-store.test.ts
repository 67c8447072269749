import fc from 'fast-check';
import pg from 'pg';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConnectionError, KvStore, MAX_KV_KEY_BYTES, ValidationError } from '../../src/index.js';
import { byteLength } from '../../src/core/validate.js';
import { useTestDatabase } from '../helpers/db.js';
import { noSql } from '../helpers/no-sql.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const kv = () => new KvStore(db.pool);
const rows = async (): Promise<number> =>
  Number((await db.pool.query('SELECT count(*) FROM pgcoord.kv')).rows[0]!.count);

describe('KvStore', () => {
  it('gets, sets, overwrites and deletes', async () => {
    const store = kv();
    expect(await store.get('a')).toBeUndefined();
    await store.set('a', '1');
    expect(await store.get('a')).toBe('1');
    await store.set('a', '');
    expect(await store.get('a')).toBe('');
    expect(await store.delete('a')).toBe(true);
    expect(await store.delete('a')).toBe(false);
    expect(await store.get('a')).toBeUndefined();
  });

  it('decides expiry on the server clock', async () => {
    const store = kv();
    const serverNow = async () =>
      (await db.pool.query<{ t: string }>(`SELECT clock_timestamp()::text AS t`)).rows[0]!.t;
    const before = await serverNow();
    await store.set('ttl', 'v', { ttlMs: 60_000 });
    const after = await serverNow();
    // ttl from the server's clock at the write, between the readings taken before and after.
    const { rows: r } = await db.pool.query<{ from_before: boolean; from_after: boolean }>(
      `SELECT expires_at >= $1::timestamptz + interval '60 s' AS from_before,
              expires_at <= $2::timestamptz + interval '60 s' AS from_after
         FROM pgcoord.kv WHERE key = 'ttl'`,
      [before, after],
    );
    expect(r[0]).toEqual({ from_before: true, from_after: true });
    // Rows expired or alive by the server's clock, whatever this process's clock says.
    await db.pool.query(
      `INSERT INTO pgcoord.kv VALUES ('past', 'x', clock_timestamp() - interval '1 second'),
                                     ('future', 'y', clock_timestamp() + interval '1 hour')`,
    );
    expect(await store.get('past')).toBeUndefined();
    expect(await store.get('future')).toBe('y');
    expect(await store.delete('past')).toBe(false); // deleted, but it was not live
    await store.set('short', 'z', { ttlMs: 30 });
    await waitFor(async () => (await store.get('short')) === undefined, { timeoutMs: 5_000 });
    expect(await store.checkAndSet('short', undefined, 'again')).toBe(true); // expired = absent
  });

  it('compares and sets', async () => {
    const store = kv();
    expect(await store.checkAndSet('c', undefined, 'v1')).toBe(true);
    expect(await store.checkAndSet('c', undefined, 'v2')).toBe(false);
    expect(await store.checkAndSet('c', 'nope', 'v2')).toBe(false);
    expect(await store.checkAndSet('c', 'v1', 'v2', { ttlMs: 60_000 })).toBe(true);
    expect(await store.get('c')).toBe('v2');
    expect(await store.checkAndSet('missing', 'v1', 'v2')).toBe(false);
    expect(await store.get('missing')).toBeUndefined();
  });

  it('loses no update with 16 writers on one key (read-then-CAS loop and update())', async () => {
    const store = kv();
    await store.set('counter', '0');
    let successes = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = 0; i < 5; i++) {
          for (;;) {
            const cur = await store.get('counter');
            if (await store.checkAndSet('counter', cur, String(Number(cur) + 1))) break;
          }
          successes++;
        }
      }),
    );
    expect(successes).toBe(80);
    expect(await store.get('counter')).toBe('80');

    // update(): two stores (two "processes") racing on one key, combined within each.
    const other = new KvStore(db.newPool({ max: 4 }));
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        (i % 2 ? store : other).update('counter', (v) => String(Number(v) + 1)),
      ),
    );
    expect(await store.get('counter')).toBe('144');
    expect(new Set(results).size).toBe(64); // every caller saw its own increment
    expect(await store.update('fresh', (v) => (v === undefined ? 'first' : 'again'))).toBe('first');
  });

  it('update() hands an error thrown by fn to its caller only', async () => {
    const store = kv();
    const [bad, good] = await Promise.allSettled([
      store.update('u', () => {
        throw new Error('mine');
      }),
      store.update('u', (v) => (v ?? '') + 'x'),
    ]);
    expect(bad.status === 'rejected' && (bad.reason as Error).message).toBe('mine');
    expect(good.status === 'fulfilled' && good.value).toBe('x');
  });

  it('gets, sets and deletes many keys in one round trip', async () => {
    const store = kv();
    await store.setMany([
      { key: 'm1', value: 'a' },
      { key: 'm2', value: 'b', ttlMs: 60_000 },
      { key: 'm1', value: 'last wins' },
    ]);
    const got = await store.getMany(['m1', 'm2', 'm3']);
    expect([...got.entries()].sort()).toEqual([
      ['m1', 'last wins'],
      ['m2', 'b'],
    ]);
    expect(await store.deleteMany(['m1', 'm2', 'm3'])).toBe(2);
    expect((await store.getMany([])).size).toBe(0);
    await store.setMany([]);
  });

  it('stores JSON', async () => {
    const store = kv();
    await store.setJson('j', { a: [1, 'two', null] });
    expect(await store.getJson('j')).toEqual({ a: [1, 'two', null] });
    expect(await store.getJson('none')).toBeUndefined();
    await expect(store.setJson('j', undefined)).rejects.toBeInstanceOf(ValidationError);
  });

  it('refuses a value JSON cannot carry (a cycle, BigInt, NaN, Infinity) with a ValidationError', async () => {
    const store = kv();
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    for (const value of [cyclic, 1n, { n: 2n }, NaN, Infinity, { a: [-Infinity] }, () => 1]) {
      const err = await store.setJson('bad-json', value).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, String(value)).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).argument).toBe('value');
    }
    expect(await store.get('bad-json')).toBeUndefined();
  });

  it('sends named prepared statements on a pool unless told not to, never on a client', async () => {
    const named = async (q: pg.Pool | pg.Client) =>
      Number(
        (
          await q.query<{ n: string }>(
            `SELECT count(*) AS n FROM pg_prepared_statements WHERE name LIKE 'pgcoord\\_%'`,
          )
        ).rows[0]!.n,
      );
    // One connection per pool, so pg_prepared_statements shows what the store's statements did.
    const prepared = db.newPool({ max: 1 });
    const store = new KvStore(prepared);
    await store.set('p', '1');
    expect(await store.get('p')).toBe('1');
    expect(await named(prepared)).toBe(2);

    const unnamed = db.newPool({ max: 1 });
    const plain = new KvStore(unnamed, { preparedStatements: false });
    await plain.set('p', '2');
    expect(await plain.get('p')).toBe('2');
    expect(await plain.checkAndSet('p', '2', '3')).toBe(true);
    expect(await named(unnamed)).toBe(0);

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const onClient = new KvStore(client);
      await onClient.set('p', '4');
      expect(await onClient.get('p')).toBe('4');
      expect(await named(client)).toBe(0);
    } finally {
      await client.end();
    }
    expect(() => new KvStore(prepared, { preparedStatements: 'yes' as never })).toThrow(
      ValidationError,
    );
  });

  it('falls back to unnamed statements for good when the server lost a named one', async () => {
    // What a transaction pooler does (the statement lives on another server connection),
    // reproduced on one direct connection: the server forgets what node-postgres prepared.
    const pool = db.newPool({ max: 1 });
    const store = new KvStore(pool);
    await store.set('lost', 'a');
    expect(await store.get('lost')).toBe('a');
    await pool.query('DEALLOCATE ALL');
    expect(await store.get('lost')).toBe('a'); // "does not exist": re-sent unnamed
    await store.set('lost', 'b');
    expect(await store.get('lost')).toBe('b');
    const { rows } = await pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_prepared_statements`,
    );
    expect(rows[0]!.n).toBe('0');
  });

  it('joins a caller transaction', async () => {
    const store = kv();
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await store.set('txk', 'v', { tx: client });
      expect(await store.get('txk', { tx: client })).toBe('v');
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await store.get('txk')).toBeUndefined();
  });

  it('purges expired rows, and the reaper does it in the background', async () => {
    const store = new KvStore(db.pool, { reapIntervalMs: 20 });
    await db.pool.query(
      `INSERT INTO pgcoord.kv SELECT 'exp' || g, 'x', clock_timestamp() - interval '1 minute' FROM generate_series(1, 5) g`,
    );
    expect(await store.purgeExpired({ limit: 2 })).toBe(2);
    await store.stop(); // stop before start is fine
    const purged = nextEvent<number>(store, 'purged');
    store.start();
    store.start();
    expect(await purged).toBe(3);
    await store.stop();
    await store.stop();
    const { rows: r } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgcoord.kv WHERE key LIKE 'exp%'`,
    );
    expect(r[0]!.n).toBe(0);
    const plan = await db.pool.query(
      `EXPLAIN SELECT key FROM pgcoord.kv WHERE expires_at <= now() ORDER BY expires_at LIMIT 10`,
    );
    expect(JSON.stringify(plan.rows)).toMatch(/kv_expires_at_idx/);
  });

  it('reaper: a core Service (promise start, signals, await using); failures reach a message-first or pino logger at warn', async () => {
    const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/x', max: 1 });
    pool.on('error', () => undefined);
    try {
      const lines: string[] = [];
      const legacy = new KvStore(pool, {
        reapIntervalMs: 10,
        logger: {
          warn: (message: string, fields?: object) =>
            void lines.push(`${message} ${typeof fields}`),
        },
      });
      {
        await using reaper = legacy;
        const started: unknown = reaper.start();
        expect(started).toBeInstanceOf(Promise);
        await started;
        await reaper.signals.started.wait();
        await waitFor(() => lines.length > 0);
      }
      await legacy.signals.stopped.wait();
      expect(lines[0]).toMatch(/^pgcoord kv reaper failed.* object$/);
      const json: Array<{ level: number; msg: string; code: string }> = [];
      const logger = pino(
        { level: 'warn' },
        { write: (line: string) => void json.push(JSON.parse(line)) },
      );
      const pinoBacked = new KvStore(pool, { reapIntervalMs: 10, logger });
      void pinoBacked.start(); // callable without awaiting
      await waitFor(() => json.length > 0);
      await pinoBacked.stop();
      expect(json[0]).toMatchObject({
        level: 40,
        msg: 'pgcoord kv reaper failed',
        code: 'PGCOORD_CONNECTION',
      });
    } finally {
      await pool.end();
    }
  });

  it('reports an unreachable database as a retryable ConnectionError', async () => {
    const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/x', max: 1 });
    pool.on('error', () => undefined);
    try {
      const err = await new KvStore(pool).get('k').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as ConnectionError).retryable).toBe(true);
    } finally {
      await pool.end();
    }
  });

  const store = new KvStore(noSql);
  it.each([
    ['empty key', () => store.set('', 'v')],
    ['over-long key', () => store.set('k'.repeat(MAX_KV_KEY_BYTES + 1), 'v')],
    ['over-long multibyte key', () => store.set('é'.repeat(513), 'v')],
    ['NUL in key', () => store.set('a\u0000', 'v')],
    ['NUL in value', () => store.set('k', 'a\u0000b')],
    ['lone surrogate in value', () => store.set('k', '\udc00')],
    ['value over 1 MiB', () => store.set('k', 'x'.repeat(1024 * 1024 + 1))],
    ['non-string value', () => store.set('k', 5 as unknown as string)],
    ['zero ttl', () => store.set('k', 'v', { ttlMs: 0 })],
    ['negative ttl', () => store.set('k', 'v', { ttlMs: -5 })],
    ['fractional ttl', () => store.set('k', 'v', { ttlMs: 1.5 })],
    ['CAS with NUL expected', () => store.checkAndSet('k', '\u0000', 'v')],
    [
      'setMany with one bad entry',
      () =>
        store.setMany([
          { key: 'ok', value: 'v' },
          { key: '', value: 'v' },
        ]),
    ],
    ['getMany of a non-array', () => store.getMany('k' as unknown as string[])],
    ['purge limit zero', () => store.purgeExpired({ limit: 0 })],
    ['update without fn', () => store.update('k', 'x' as never)],
  ])('refuses %s with ValidationError and writes nothing', async (_label, call) => {
    const before = await rows();
    await expect(call()).rejects.toBeInstanceOf(ValidationError);
    expect(await rows()).toBe(before);
  });

  it('round-trips any valid key and value, and refuses any invalid one (fuzz)', async () => {
    // Its own schema, so generated keys never meet the other tests' keys.
    const store = new KvStore(db.pool, { schema: 'fuzz' });
    await store.get('warm-up'); // migrates the schema
    const rows = async (): Promise<number> =>
      Number((await db.pool.query('SELECT count(*) FROM fuzz.kv')).rows[0]!.count);
    const text = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: 'binary-ascii', maxLength: 40 }),
      fc.constantFrom('', '\u0000', 'a\ud800b', 'k'.repeat(1025), 'é'.repeat(512)),
    );
    await fc.assert(
      fc.asyncProperty(text, text, async (key, value) => {
        const validKey =
          key.length > 0 &&
          !key.includes('\u0000') &&
          key.isWellFormed() &&
          byteLength(key) <= 1024;
        const validValue = !value.includes('\u0000') && value.isWellFormed();
        const before = await rows();
        if (validKey && validValue) {
          await store.set(key, value);
          expect(await store.get(key)).toBe(value);
          expect((await store.getMany([key])).get(key)).toBe(value);
          expect(await store.delete(key)).toBe(true);
        } else {
          await expect(store.set(key, value)).rejects.toBeInstanceOf(ValidationError);
        }
        expect(await rows()).toBe(before);
      }),
      { numRuns: 150 },
    );
  });
});
