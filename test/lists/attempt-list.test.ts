import { isUtf8 } from 'node:buffer';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ATTEMPT_LIST_LIMITS, AttemptList, ValidationError } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase();

let n = 0;
/** A list name of its own for each test, so tests never see each other's items. */
const fresh = (label: string) => `${label}-${++n}`;

async function totalRows(): Promise<number> {
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM pgcoord.list_items');
  return rows[0].n as number;
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('AttemptList: the pgstore operations', () => {
  it('insertOne is idempotent and returns how many were new', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('ins');
    expect(await list.insertOne(l, 'a')).toBe(1);
    await list.incrementOne(l, 'a');
    expect(await list.insertOne(l, 'a')).toBe(0);
    expect(await list.getOne(l, 'a')).toBe(1); // existing item kept its attempts
  });

  it('insertBatch: empty -> 0, duplicates (in input or stored) count once, existing keep attempts', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('batch');
    expect(await list.insertBatch(l, [])).toBe(0);
    expect(await list.insertBatch(l, ['a', 'b', 'a'])).toBe(2);
    await list.incrementBatch(l, ['a']);
    expect(await list.insertBatch(l, ['a', 'b', 'c'])).toBe(1);
    expect(await list.getOne(l, 'a')).toBe(1);
    expect(await list.count(l)).toBe(3);
  });

  it('insertBatch of 100,000 items in one call (chunked in one transaction)', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('big');
    const items = Array.from({ length: 100_000 }, (_, i) => `i${i}`);
    expect(await list.insertBatch(l, items)).toBe(100_000);
    expect(await list.count(l)).toBe(100_000);
    await list.deleteBatch(l, items);
  });

  it('getOne: missing list or item -> undefined, no error', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('get');
    expect(await list.getOne('no-such-list', 'x')).toBeUndefined();
    await list.insertOne(l, 'x');
    expect(await list.getOne(l, 'y')).toBeUndefined();
    expect(await list.getOne(l, 'x')).toBe(0);
  });

  it('getBatch: the pgstore example a..g two at a time', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('page');
    await list.insertBatch(l, ['g', 'e', 'c', 'a', 'b', 'd', 'f']);
    const pages: string[][] = [];
    let after = '';
    for (;;) {
      const page = await list.getBatch(l, { after, count: 2 });
      if (page.length === 0) break;
      pages.push(page.map((e) => e.item));
      after = page[page.length - 1]!.item;
    }
    expect(pages).toEqual([['a', 'b'], ['c', 'd'], ['e', 'f'], ['g']]);
    // The start need not exist.
    expect((await list.getBatch(l, { after: 'bb', count: 2 })).map((e) => e.item)).toEqual([
      'c',
      'd',
    ]);
    expect(await list.getBatch(l, { after: 'g', count: 2 })).toEqual([]);
    expect(await list.getBatch('empty-list', { count: 5 })).toEqual([]);
  });

  it('getBatch is byte order (COLLATE "C"), not the locale', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('bytes');
    const items = ['b', 'B', 'a', 'A', 'é', 'e', 'Z', '_', '10', '9', '日本', '😀'];
    await list.insertBatch(l, items);
    const page = await list.getBatch(l, { count: 100 });
    expect(page.map((e) => e.item)).toEqual([...items].sort(byteOrder));
  });

  it('incrementOne/Batch return rows touched: missing -> 0, duplicates count once', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('inc');
    await list.insertBatch(l, ['a', 'b']);
    expect(await list.incrementOne(l, 'a')).toBe(1);
    expect(await list.incrementOne(l, 'zz')).toBe(0);
    expect(await list.incrementBatch(l, ['a', 'a', 'b', 'missing'])).toBe(2);
    expect(await list.getOne(l, 'a')).toBe(2);
    expect(await list.getOne(l, 'b')).toBe(1);
    expect(await list.incrementBatch(l, [])).toBe(0);
  });

  it('deleteOne/Batch return rows deleted: missing -> 0, duplicates count once', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('del');
    await list.insertBatch(l, ['a', 'b', 'c']);
    expect(await list.deleteOne(l, 'a')).toBe(1);
    expect(await list.deleteOne(l, 'a')).toBe(0);
    expect(await list.deleteBatch(l, ['b', 'b', 'c', 'x'])).toBe(2);
    expect(await list.count(l)).toBe(0);
  });

  it('lists() names every list with its size; nuke() empties only this schema', async () => {
    const other = new AttemptList(db.pool, { schema: 'other_lists' });
    await other.insertBatch('keep', ['1', '2']);
    const list = new AttemptList(db.pool, { schema: 'nuke_lists' });
    await list.insertBatch('x', ['a', 'b', 'c']);
    await list.insertBatch('y', ['a']);
    expect(await list.lists()).toEqual([
      { list: 'x', size: 3 },
      { list: 'y', size: 1 },
    ]);
    expect(await list.nuke()).toBe(4);
    expect(await list.lists()).toEqual([]);
    expect(await other.count('keep')).toBe(2);
  });
});

describe('AttemptList: caller transactions', () => {
  it('every write inside a rolled-back transaction leaves nothing', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('tx');
    await list.insertBatch(l, ['keep1', 'keep2']);
    const before = await list.getBatch(l, { count: 10 });
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const tx = client;
      expect(await list.insertOne(l, 'new', { tx })).toBe(1);
      expect(
        await list.insertBatch(
          l,
          Array.from({ length: 25_000 }, (_, i) => `t${i}`),
          { tx },
        ),
      ).toBe(25_000);
      expect(await list.incrementBatch(l, ['keep1'], { tx })).toBe(1);
      expect(await list.deleteOne(l, 'keep2', { tx })).toBe(1);
      expect((await list.import(l, ['imp1', 'imp2'], { tx })).inserted).toBe(2);
      const claims = await list.claim(l, { limit: 3, leaseMs: 60_000, tx });
      expect(claims).toHaveLength(3);
      // Reads in the transaction see its writes.
      expect(await list.count(l, { tx })).toBe(1 + 1 + 25_000 + 2);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await list.getBatch(l, { count: 10 })).toEqual(before);
  });

  it('claim settlements inside a rolled-back transaction leave the claims as they were', async () => {
    const list = new AttemptList(db.pool, { schema: 'tx_claims' });
    const l = fresh('txclaims');
    await list.insertBatch(l, ['a', 'b', 'c', 'd', 'e']);
    const claims = await list.claim(l, { limit: 5, leaseMs: 60_000 });
    const [a, b, c, d] = claims;
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const tx = client;
      expect((await list.complete(l, [a!], { tx })).count).toBe(1);
      expect((await list.fail(l, [b!], { tx, maxAttempts: 1 })).dead).toEqual([b!.item]);
      expect((await list.release(l, [c!], { tx })).count).toBe(1);
      expect((await list.extend(l, [d!], { tx, leaseMs: 1000 })).count).toBe(1);
      expect(
        (await list.completeAndClaim(l, [], { tx, limit: 5, leaseMs: 1000 })).claims,
      ).toHaveLength(1);
      expect(await list.requeue(l, undefined, { tx })).toBe(1);
      expect(await list.nuke({ tx })).toBe(4); // a was completed in this transaction
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    // Every claim is still current: completing them all works exactly once.
    expect(await list.complete(l, claims)).toEqual({ count: 5, stale: [] });
  });

  it('a write commits with the caller transaction', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('txc');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await list.insertBatch(l, ['a', 'b'], { tx: client });
      expect(await list.count(l)).toBe(0); // not visible outside yet
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(await list.count(l)).toBe(2);
  });
});

describe('AttemptList: bulk import', () => {
  it('imports from an async iterable with progress, skipping duplicates', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('imp');
    await list.insertBatch(l, ['i1']);
    await list.incrementOne(l, 'i1');
    async function* source() {
      for (let i = 0; i < 5_000; i++) yield `i${i}`;
      yield 'i3'; // a duplicate within the input
    }
    const progress: Array<{ read: number; inserted: number }> = [];
    const r = await list.import(l, source(), {
      chunkSize: 1_000,
      onProgress: (p) => progress.push(p),
    });
    expect(r).toEqual({ read: 5_001, inserted: 4_999 });
    expect(progress.length).toBeGreaterThanOrEqual(5);
    expect(progress[progress.length - 1]).toEqual(r);
    expect(await list.count(l)).toBe(5_000);
    expect(await list.getOne(l, 'i1')).toBe(1); // existing item kept its attempts
  });

  it('a big import refreshes the table statistics inside the transaction and leaves its settings as they were', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('stats');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL default_statistics_target = 123`);
      const n = 60_000; // above ANALYZE_AFTER_ROWS
      const r = await list.import(
        l,
        Array.from({ length: n }, (_, i) => `st${i}`),
        { tx: client },
      );
      expect(r.inserted).toBe(n);
      // The planner already knows the load (ANALYZE writes the size in place), before commit.
      const { rows } = await client.query(
        `SELECT reltuples FROM pg_class WHERE oid = 'pgcoord.list_items'::regclass`,
      );
      expect(Number(rows[0].reltuples)).toBeGreaterThanOrEqual(n * 0.9);
      // ... and this list, new in this transaction, is among the most common values already.
      const mcv = await client.query(
        `SELECT most_common_vals::text AS v FROM pg_stats
          WHERE schemaname = 'pgcoord' AND tablename = 'list_items' AND attname = 'list'`,
      );
      expect(String(mcv.rows[0]?.v)).toContain(l);
      expect((await client.query('SHOW default_statistics_target')).rows[0]).toEqual({
        default_statistics_target: '123',
      });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  it('a clash in the middle of a streamed COPY loses no item of a slow async source', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('clash');
    await list.insertBatch(l, ['s0500', 's2500']);
    async function* slow() {
      for (let i = 0; i < 3_000; i++) {
        // Hand control back to the event loop between items, as a network source would.
        await new Promise((resolve) => setImmediate(resolve));
        yield `s${String(i).padStart(4, '0')}`;
      }
    }
    const r = await list.import(l, slow(), { chunkSize: 1_000 });
    expect(r).toEqual({ read: 3_000, inserted: 2_998 });
    expect(await list.count(l)).toBe(3_000);
  });

  it('imports a byte stream of lines (CRLF, blank lines) and escapes tabs, backslashes', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('lines');
    const stream = Readable.from([
      Buffer.from('a\r\nb\\c\n\nd\te\n'),
      Buffer.from('日本'),
      Buffer.from('語\n'),
    ]);
    const r = await list.import(l, stream);
    expect(r).toEqual({ read: 4, inserted: 4 });
    expect((await list.getBatch(l, { count: 10 })).map((e) => e.item).sort(byteOrder)).toEqual(
      ['a', 'b\\c', 'd\te', '日本語'].sort(byteOrder),
    );
    const objects = Readable.from(['x', 'y'], { objectMode: true });
    expect(await list.import(l, objects)).toEqual({ read: 2, inserted: 2 });
  });

  it('a byte stream that is not UTF-8 is refused, naming the line, and writes nothing', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('utf8');
    const refused = async (chunks: Buffer[]) => {
      const err = await list.import(l, Readable.from(chunks)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      return (err as ValidationError).message;
    };
    const lines = Array.from({ length: 3_000 }, (_, i) => `ok${i}\n`).join('');
    // Far into the source (past the first COPY chunk), on a line that began in the chunk before.
    expect(
      await refused([
        Buffer.from(lines + 'be'),
        Buffer.from([0x67, 0xc3, 0x28, 0x0a]),
        Buffer.from('later\n'),
      ]),
    ).toMatch(/line 3001 is not valid UTF-8/);
    expect(await refused([Buffer.from('a\nb\n\xff\n', 'latin1')])).toMatch(/line 3 /);
    // A sequence cut short by the end of the source.
    expect(await refused([Buffer.from('a\n'), Buffer.from([0xe6, 0x97])])).toMatch(/line 2 /);
    expect(await list.count(l)).toBe(0);
    // Split across chunks, a character is whole: accepted.
    const ok = Buffer.from('日本語\n');
    await list.import(l, Readable.from([ok.subarray(0, 4), ok.subarray(4)]));
    expect(await list.getBatch(l)).toEqual([{ item: '日本語', attempts: 0 }]);
  });

  it('any bytes, split anywhere: imported when they are UTF-8, else refused with nothing written', async () => {
    const list = new AttemptList(db.pool);
    // Bytes that make valid and broken sequences: ASCII, newline, leads, continuations, never-valid.
    const byte = fc.constantFrom(
      0x61,
      0x0a,
      0xc3,
      0xa9,
      0xe6,
      0x97,
      0xa5,
      0xf0,
      0x9f,
      0x80,
      0xff,
      0xc0,
      0xed,
      0xa0,
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(byte, { maxLength: 40 }),
        fc.array(fc.nat(40), { maxLength: 6 }),
        async (bytes, cuts) => {
          const all = Buffer.from(bytes);
          const at = [...new Set(cuts.map((c) => Math.min(c, all.length)))].sort((a, b) => a - b);
          const chunks = [0, ...at].map((from, i) => all.subarray(from, [...at, all.length][i]));
          const l = fresh('utf8-fuzz');
          const result = await list.import(l, Readable.from(chunks)).catch((e: unknown) => e);
          if (isUtf8(all)) {
            const lines = all
              .toString('utf8')
              .split('\n')
              .filter((x) => x.length > 0);
            expect(result).toEqual({ read: lines.length, inserted: new Set(lines).size });
          } else {
            expect(result).toBeInstanceOf(ValidationError);
            expect((result as ValidationError).message).toMatch(/line \d+ is not valid UTF-8/);
            expect(await list.count(l)).toBe(0);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a bad item anywhere in the source writes nothing', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('impbad');
    function* source() {
      for (let i = 0; i < 3_000; i++) yield `ok${i}`;
      yield 'bad\u0000';
    }
    const err = await list.import(l, source(), { chunkSize: 1_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).argument).toBe('source item 3000');
    expect(await list.count(l)).toBe(0);
    const notStrings = await list.import(l, [1, 2] as unknown as string[]).catch((e: unknown) => e);
    expect(notStrings).toBeInstanceOf(ValidationError);
  });
});

describe('AttemptList: bad input', () => {
  const long = (bytes: number) => 'x'.repeat(bytes);
  const claimRef = { item: 'a', token: '1' };

  // Each case: what to call, the argument its ValidationError must name.
  const cases: Array<[string, (l: AttemptList) => Promise<unknown>, string]> = [
    ['empty list name', (l) => l.insertOne('', 'a'), 'list'],
    [
      'list name over the limit',
      (l) => l.insertOne(long(ATTEMPT_LIST_LIMITS.maxListBytes + 1), 'a'),
      'list',
    ],
    ['list name with NUL', (l) => l.insertBatch('a\u0000', ['a']), 'list'],
    ['list name not a string', (l) => l.count(42 as unknown as string), 'list'],
    ['empty item', (l) => l.insertOne('l', ''), 'item'],
    [
      'item over the limit',
      (l) => l.insertOne('l', long(ATTEMPT_LIST_LIMITS.maxItemBytes + 1)),
      'item',
    ],
    ['multi-byte item over the limit', (l) => l.insertOne('l', 'é'.repeat(1025)), 'item'],
    ['item with NUL', (l) => l.incrementOne('l', 'a\u0000b'), 'item'],
    ['lone surrogate', (l) => l.deleteOne('l', 'a\ud800'), 'item'],
    ['item not a string', (l) => l.getOne('l', null as unknown as string), 'item'],
    ['items not an array', (l) => l.insertBatch('l', 'abc' as unknown as string[]), 'items'],
    ['one bad item in a batch', (l) => l.insertBatch('l', ['ok', 'ok2', '']), 'items[2]'],
    [
      'bad item in deleteBatch',
      (l) => l.deleteBatch('l', ['a', 7 as unknown as string]),
      'items[1]',
    ],
    ['bad item in incrementBatch', (l) => l.incrementBatch('l', ['a\u0000']), 'items[0]'],
    ['count 0', (l) => l.getBatch('l', { count: 0 }), 'options.count'],
    ['count negative', (l) => l.getBatch('l', { count: -1 }), 'options.count'],
    ['count absurd', (l) => l.getBatch('l', { count: 1e9 }), 'options.count'],
    ['count not an integer', (l) => l.getBatch('l', { count: 1.5 }), 'options.count'],
    ['after with NUL', (l) => l.getBatch('l', { after: '\u0000' }), 'options.after'],
    ['claim limit 0', (l) => l.claim('l', { limit: 0, leaseMs: 1000 }), 'options.limit'],
    ['claim limit absurd', (l) => l.claim('l', { limit: 1e7, leaseMs: 1000 }), 'options.limit'],
    ['claim leaseMs 0', (l) => l.claim('l', { limit: 1, leaseMs: 0 }), 'options.leaseMs'],
    ['claim leaseMs negative', (l) => l.claim('l', { limit: 1, leaseMs: -5 }), 'options.leaseMs'],
    ['claim leaseMs missing', (l) => l.claim('l', { limit: 1 } as never), 'options.leaseMs'],
    [
      'claim maxAttempts 0',
      (l) => l.claim('l', { limit: 1, leaseMs: 10, maxAttempts: 0 }),
      'options.maxAttempts',
    ],
    ['claim without options', (l) => l.claim('l', undefined as never), 'options.limit'],
    ['claims not an array', (l) => l.complete('l', {} as never), 'claims'],
    ['claim without token', (l) => l.complete('l', [{ item: 'a' } as never]), 'claims[0].token'],
    [
      'claim with a bad token',
      (l) => l.release('l', [{ item: 'a', token: '1; drop' }]),
      'claims[0].token',
    ],
    [
      'claim with a token past the bigint range',
      (l) => l.complete('l', [claimRef, { item: 'b', token: '9223372036854775808' }]),
      'claims[1].token',
    ],
    ['claim with a bad item', (l) => l.fail('l', [{ item: '', token: '1' }]), 'claims[0].item'],
    [
      'fail retryDelayMs negative',
      (l) => l.fail('l', [claimRef], { retryDelayMs: -1 }),
      'options.retryDelayMs',
    ],
    ['extend leaseMs 0', (l) => l.extend('l', [claimRef], { leaseMs: 0 }), 'options.leaseMs'],
    [
      'strict not a boolean',
      (l) => l.complete('l', [claimRef], { strict: 'yes' as never }),
      'options.strict',
    ],
    [
      'completeAndClaim limit negative',
      (l) => l.completeAndClaim('l', [], { limit: -1, leaseMs: 10 }),
      'options.limit',
    ],
    [
      'completeAndClaim bad done',
      (l) => l.completeAndClaim('l', [null as never], { limit: 1, leaseMs: 10 }),
      'done[0]',
    ],
    ['requeue bad items', (l) => l.requeue('l', [''] as string[]), 'items[0]'],
    ['dead count 0', (l) => l.dead('l', { count: 0 }), 'options.count'],
    ['tx not a queryable', (l) => l.insertOne('l', 'a', { tx: {} as never }), 'options.tx'],
    ['options not an object', (l) => l.insertOne('l', 'a', 5 as never), 'options'],
    ['import source not iterable', (l) => l.import('l', 5 as never), 'source'],
    [
      'import chunkSize too small',
      (l) => l.import('l', ['a'], { chunkSize: 1 }),
      'options.chunkSize',
    ],
  ];

  it.each(cases)('%s -> ValidationError, nothing written', async (_name, call, argument) => {
    const list = new AttemptList(db.pool);
    const before = await totalRows();
    const err = await call(list).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).code).toBe('PGCOORD_VALIDATION');
    expect((err as ValidationError).argument).toBe(argument);
    expect(await totalRows()).toBe(before);
  });

  it('any token within the bigint range is accepted, and one nobody holds is stale', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('tokens');
    await list.insertBatch(l, ['a', 'b', 'c']);
    const tokens = ['9223372036854775807', '99', '0000000000000000001'];
    const claims = tokens.map((token, i) => ({ item: ['a', 'b', 'c'][i]!, token }));
    expect(await list.complete(l, claims)).toEqual({ count: 0, stale: ['a', 'b', 'c'] });
    expect(await list.count(l)).toBe(3);
  });

  it('the constructor refuses bad options', () => {
    expect(() => new AttemptList(db.pool, { schema: '' })).toThrow(ValidationError);
    expect(() => new AttemptList(db.pool, { maxAttempts: 0 })).toThrow(ValidationError);
    expect(() => new AttemptList({} as never)).toThrow(ValidationError);
  });

  it('a batch over the per-call limit is refused before SQL', async () => {
    const list = new AttemptList(db.pool);
    const items = new Array<string>(ATTEMPT_LIST_LIMITS.maxBatchItems + 1).fill('x');
    const err = await list.insertBatch('l', items).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toContain(String(ATTEMPT_LIST_LIMITS.maxBatchItems));
  });
});

describe('AttemptList: fuzz', () => {
  const isValid = (s: string) =>
    s.length > 0 &&
    !s.includes('\u0000') &&
    s.isWellFormed() &&
    Buffer.byteLength(s) <= ATTEMPT_LIST_LIMITS.maxItemBytes;

  it('any unicode item within the limits round-trips; any other is refused and writes nothing', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('fuzz');
    const arbitraryItem = fc.oneof(
      fc.string({ unit: 'binary', minLength: 0, maxLength: 40 }),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }),
      fc.string({
        unit: fc.constantFrom('\u0000', '\ud800', '\udfff', 'a', '\\', '\t', '\n'),
        maxLength: 6,
      }),
      fc
        .integer({ min: 2040, max: 2060 })
        .map((len) => 'é'.repeat(Math.ceil(len / 2)).slice(0, len / 2 + 1)),
      fc.string({ unit: 'binary-ascii', minLength: 2040, maxLength: 2060 }),
    );
    await fc.assert(
      fc.asyncProperty(arbitraryItem, async (item) => {
        const before = await list.count(l);
        if (isValid(item)) {
          await list.insertOne(l, item);
          expect(await list.getOne(l, item)).toBe(0);
          const page = await list.getBatch(l, { count: 100_000 });
          expect(page.some((e) => e.item === item)).toBe(true);
          // A claim of it is checked the same way (a token nobody holds: stale, not applied).
          expect(await list.complete(l, [{ item, token: '1' }])).toEqual({
            count: 0,
            stale: [item],
          });
          expect(await list.deleteOne(l, item)).toBe(1);
        } else {
          await expect(list.insertOne(l, item)).rejects.toBeInstanceOf(ValidationError);
          await expect(list.insertBatch(l, ['fine', item])).rejects.toBeInstanceOf(ValidationError);
          await expect(list.import(l, ['fine', item])).rejects.toBeInstanceOf(ValidationError);
          await expect(
            list.completeAndClaim(
              l,
              [
                { item: 'fine', token: '1' },
                { item, token: '1' },
              ],
              {
                limit: 1,
                leaseMs: 1000,
              },
            ),
          ).rejects.toBeInstanceOf(ValidationError);
          expect(await list.count(l)).toBe(before);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('paging any set of items returns each once, in byte order', async () => {
    const list = new AttemptList(db.pool);
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }).filter(isValid), {
          maxLength: 40,
        }),
        fc.integer({ min: 1, max: 7 }),
        async (items, count) => {
          const l = fresh('fuzzpage');
          await list.import(l, items);
          const seen: string[] = [];
          let after = '';
          for (;;) {
            const page = await list.getBatch(l, { after, count });
            if (page.length === 0) break;
            seen.push(...page.map((e) => e.item));
            after = page[page.length - 1]!.item;
          }
          expect(seen).toEqual([...items].sort(byteOrder));
        },
      ),
      { numRuns: 40 },
    );
  });
});
