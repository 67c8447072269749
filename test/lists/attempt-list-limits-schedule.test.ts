// Keys and limits (migration 0014) together with scheduled, prioritized inserts (migration 0012):
// every insert variant sets the key and makes its key row due, and claims keep both the limits
// and the priority order.
import { describe, expect, it } from 'vitest';
import { AttemptList, ValidationError } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase();

let n = 0;
const fresh = (label: string) => `${label}-${++n}`;
const LEASE = { leaseMs: 30_000 };

async function keysOf(list: string): Promise<Record<string, string | null>> {
  const { rows } = await db.pool.query<{ item: string; key: string | null }>(
    'SELECT item, key FROM pgcoord.list_items WHERE list = $1',
    [list],
  );
  return Object.fromEntries(rows.map((r) => [r.item, r.key]));
}

async function keyRows(list: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ key: string }>(
    'SELECT key FROM pgcoord.list_keys WHERE list = $1 ORDER BY key',
    [list],
  );
  return rows.map((r) => r.key);
}

describe('keys and limits with scheduled, prioritized inserts', () => {
  it('keyed + scheduled + prioritized insertBatch on a limited list: per-key limit and priority order hold', async () => {
    const lists = new AttemptList(db.pool);
    const list = fresh('ks');
    await lists.setLimits(list, { perKey: { concurrency: 1 } });
    const inserted = await lists.insertBatch(
      list,
      [
        { item: 'a-low', key: 'a', priority: -1 },
        { item: 'a-high', key: 'a', priority: 5 },
        { item: 'a-later', key: 'a', priority: 9, delayMs: 3_600_000 },
        { item: 'b-mid', key: 'b', priority: 1 },
        { item: 'b-future', key: 'b', priority: 9, runAt: new Date('2999-01-01T00:00:00Z') },
        'c-plain', // no key: the list has limits, so the key ''
      ],
      { priority: 2 }, // the batch's default priority, for c-plain
    );
    expect(inserted).toBe(6);
    expect(await keysOf(list)).toEqual({
      'a-low': 'a',
      'a-high': 'a',
      'a-later': 'a',
      'b-mid': 'b',
      'b-future': 'b',
      'c-plain': '',
    });
    expect(await keyRows(list)).toEqual(['', 'a', 'b']);

    // One per key (perKey.concurrency 1), each key's highest-priority due item.
    const first = await lists.completeAndClaim(list, [], { limit: 10, ...LEASE });
    expect(first.claims.map((c) => c.item).sort()).toEqual(['a-high', 'b-mid', 'c-plain']);
    // Every key is at its limit: nothing more, and the claim says when to look again.
    const blocked = await lists.completeAndClaim(list, [], { limit: 10, ...LEASE });
    expect(blocked.claims).toEqual([]);
    expect(blocked.nextSlotMs).toBeGreaterThan(0);
    // Completing frees the slots: key a's next due item (a-later is not due); key b has only its
    // far-future item; '' is empty.
    const second = await lists.completeAndClaim(list, first.claims, { limit: 10, ...LEASE });
    expect(second.claims.map((c) => c.item)).toEqual(['a-low']);
    expect(await lists.stats(list)).toMatchObject({ total: 3, leased: 1, delayed: 2 });
  });

  it('insertOne with a key and a schedule; a key rule derives the key of scheduled batches', async () => {
    const lists = new AttemptList(db.pool);
    const list = fresh('ks1');
    await lists.setLimits(list, { keyRegex: '^([a-z]+):', perKey: { concurrency: 1 } });
    expect(await lists.insertOne(list, 'x:1', { key: 'given', priority: 3 })).toBe(1);
    // One schedule for the batch (the scheduled statement), keys by the rule.
    await lists.insertBatch(list, ['host:1', 'host:2', 'nomatch'], { priority: 1 });
    // A per-item schedule (the per-item statement), keys by the rule and given.
    await lists.insertBatch(list, [
      { item: 'host:3', priority: 7 },
      { item: 'other:1', key: 'k2', delayMs: 0 },
    ]);
    expect(await keysOf(list)).toEqual({
      'x:1': 'given',
      'host:1': 'host',
      'host:2': 'host',
      'host:3': 'host',
      nomatch: '',
      'other:1': 'k2',
    });
    expect(await keyRows(list)).toEqual(['', 'given', 'host', 'k2']);
    const claims = await lists.claim(list, { limit: 10, ...LEASE });
    // host's highest priority first; one per key.
    expect(claims.map((c) => c.item).sort()).toEqual(['host:3', 'nomatch', 'other:1', 'x:1']);
  });

  it('import with keys and a schedule on a limited list: keys set, key rows due, priority kept', async () => {
    const lists = new AttemptList(db.pool);
    const list = fresh('ksi');
    await lists.setLimits(list, { perKey: { concurrency: 1 } });
    const r = await lists.import(list, ['k1\tone', 'k1\ttwo', 'k2\tthree', 'bare'], {
      keySeparator: '\t',
      priority: 4,
    });
    expect(r).toEqual({ read: 4, inserted: 4 });
    expect(await keysOf(list)).toEqual({ one: 'k1', two: 'k1', three: 'k2', bare: '' });
    expect(await keyRows(list)).toEqual(['', 'k1', 'k2']);
    await lists.insertOne(list, 'urgent', { key: 'k1', priority: 10 });
    const claims = await lists.claim(list, { limit: 10, ...LEASE });
    expect(claims.map((c) => c.item).sort()).toEqual(['bare', 'three', 'urgent']);
    const { rows } = await db.pool.query<{ priority: number }>(
      'SELECT DISTINCT priority FROM pgcoord.list_items WHERE list = $1 AND item <> $2',
      [list, 'urgent'],
    );
    expect(rows).toEqual([{ priority: 4 }]);
    // A delayed import onto a limited list: not claimable yet.
    await lists.import(list, ['k3\tlater'], { keySeparator: '\t', delayMs: 3_600_000 });
    expect(await keysOf(list)).toMatchObject({ later: 'k3' });
    expect(await lists.claim(list, { limit: 10, ...LEASE })).toEqual([]);
  });

  it('a list that never had limits keeps NULL keys on every insert variant (and COPY imports)', async () => {
    const lists = new AttemptList(db.pool);
    const list = fresh('plain');
    await lists.insertOne(list, 'one', { delayMs: 10 });
    await lists.insertBatch(list, ['two', { item: 'three', priority: 2 }]);
    await lists.import(list, ['four', 'five'], { priority: 1 });
    expect(Object.values(await keysOf(list))).toEqual([null, null, null, null, null]);
    expect(await keyRows(list)).toEqual([]);
    // ... unless a key is given.
    await lists.insertBatch(list, [{ item: 'six', key: 'k', runAt: new Date(0) }]);
    expect((await keysOf(list)).six).toBe('k');
    expect(await keyRows(list)).toEqual(['k']);
  });

  it('bad keys in item objects are refused before SQL, naming the item', async () => {
    const lists = new AttemptList(db.pool);
    await expect(lists.insertBatch('x', [{ item: 'a', key: '' }])).rejects.toThrow(ValidationError);
    await expect(
      lists.insertBatch('x', [{ item: 'a', key: 'k', bogus: 1 } as never]),
    ).rejects.toThrow(/items\[0\].*unknown field "bogus"; the fields are item, key, runAt/);
    await expect(lists.insertOne('x', 'a', { key: 'k'.repeat(3000) })).rejects.toThrow(
      /options\.key/,
    );
  });
});
