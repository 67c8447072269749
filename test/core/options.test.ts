// The shared option checks, and the gaps they close in the blocks: a constructor given no
// Queryable, a `tx` that is not one, a boolean option given a string.
import { describe, expect, it } from 'vitest';
import {
  AttemptList,
  ChangeCapture,
  KvStore,
  LeaderElection,
  LeaseManager,
  MAX_LEASE_NAME_BYTES,
  MAX_LEASE_TTL_MS,
  MIN_LEASE_TTL_MS,
  Notifier,
  RateLimiter,
  ValidationError,
  notify,
} from '../../src/index.js';
import { checkBoolean, checkOneOf, checkQueryable, checkTx, frozen } from '../../src/core/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase();

/** The ValidationError `fn` throws (sync or async), or fails the test. */
async function refusal(fn: () => unknown): Promise<ValidationError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ValidationError);
  return err as ValidationError;
}

const NOT_QUERYABLES: unknown[] = [null, undefined, {}, 'postgres://x', { query: 'SELECT 1' }];

describe('shared checks', () => {
  it('name the argument and the limit', () => {
    expect(() => checkQueryable('queryable', null)).toThrow(
      /queryable: must be a Queryable \(a pg\.Pool, a pg client or a ClusterPool\), got null/,
    );
    expect(checkQueryable('queryable', db.pool)).toBe(db.pool);
    expect(checkTx(undefined)).toBeUndefined();
    expect(() => checkTx({})).toThrow(/options\.tx: must be a Queryable/);
    expect(() => checkOneOf('options.mode', 'x', ['a', 'b'])).toThrow(
      /options\.mode: must be one of a, b, got "x"/,
    );
    expect(checkOneOf('options.mode', undefined, ['a', 'b'], 'b')).toBe('b');
    expect(() => checkBoolean('options.unlogged', 'yes', false)).toThrow(
      /options\.unlogged: must be true or false, got "yes"/,
    );
    expect(() => checkBoolean('options.unlogged', 1, false)).toThrow(ValidationError);
    expect(checkBoolean('options.unlogged', undefined, true)).toBe(true);
    const resolved = frozen({ a: 1, list: [1, 2] });
    expect(Object.isFrozen(resolved) && Object.isFrozen(resolved.list)).toBe(true);
  });
});

describe('every block constructor refuses what is not a Queryable', () => {
  const constructors: Array<[string, (q: unknown) => unknown]> = [
    ['AttemptList', (q) => new AttemptList(q as never)],
    ['KvStore', (q) => new KvStore(q as never)],
    ['LeaseManager', (q) => new LeaseManager(q as never)],
    ['LeaderElection', (q) => new LeaderElection(q as never, { name: 'n' })],
    ['RateLimiter', (q) => new RateLimiter(q as never, { limit: 1, periodMs: 1000 })],
    ['ChangeCapture', (q) => new ChangeCapture(q as never)],
    ['Notifier', (q) => new Notifier(q as never)],
  ];
  for (const [name, make] of constructors) {
    it(name, async () => {
      for (const q of NOT_QUERYABLES) {
        const err = await refusal(() => make(q));
        expect(err.argument, `${name}(${String(q)})`).toBe('queryable');
      }
    });
  }
});

describe('every options.tx outside attempt lists is checked before SQL', () => {
  // Built on first use: the pool exists only once the file's database does.
  let made: ReturnType<typeof blocks> | undefined;
  const blocks = () => ({
    kv: new KvStore(db.pool),
    leases: new LeaseManager(db.pool),
    limiter: new RateLimiter(db.pool, { limit: 5, periodMs: 60_000 }),
    capture: new ChangeCapture(db.pool),
    notifier: new Notifier(db.pool),
  });
  const b = () => (made ??= blocks());
  const lease = { name: 'l', owner: 'o', token: 1n, expiresAt: new Date() };
  const calls: Array<[string, (tx: unknown) => Promise<unknown>]> = [
    ['kv.get', (tx) => b().kv.get('k', { tx } as never)],
    ['kv.set', (tx) => b().kv.set('k', 'v', { tx } as never)],
    ['kv.delete', (tx) => b().kv.delete('k', { tx } as never)],
    ['kv.checkAndSet', (tx) => b().kv.checkAndSet('k', undefined, 'v', { tx } as never)],
    ['kv.getMany', (tx) => b().kv.getMany(['k'], { tx } as never)],
    ['kv.setMany', (tx) => b().kv.setMany([{ key: 'k', value: 'v' }], { tx } as never)],
    ['kv.deleteMany', (tx) => b().kv.deleteMany(['k'], { tx } as never)],
    ['kv.purgeExpired', (tx) => b().kv.purgeExpired({ tx } as never)],
    ['leases.acquire', (tx) => b().leases.acquire('l', { tx } as never)],
    ['leases.renew', (tx) => b().leases.renew(lease, { tx } as never)],
    ['leases.release', (tx) => b().leases.release(lease, { tx } as never)],
    ['leases.holder', (tx) => b().leases.holder('l', { tx } as never)],
    ['limiter.consume', (tx) => b().limiter.consume('k', { tx } as never)],
    ['limiter.peek', (tx) => b().limiter.peek('k', { tx } as never)],
    ['limiter.reset', (tx) => b().limiter.reset('k', { tx } as never)],
    ['capture.track', (tx) => b().capture.track('t', { tx } as never)],
    ['capture.untrack', (tx) => b().capture.untrack('t', { tx } as never)],
    ['capture.replay', (tx) => b().capture.replay('g', { tx } as never)],
    ['capture.dropGroup', (tx) => b().capture.dropGroup('g', { tx } as never)],
    ['notify', (tx) => notify(db.pool, 'c', 'p', { tx } as never)],
    ['notifier.notify', (tx) => b().notifier.notify('c', 'p', { tx } as never)],
  ];
  for (const [name, call] of calls) {
    it(name, async () => {
      for (const tx of [{}, 'client', null, 42]) {
        const err = await refusal(() => call(tx));
        expect(err.argument, `${name} with tx ${String(tx)}`).toBe('options.tx');
      }
    });
  }
});

describe('options that were read loosely', () => {
  it('RateLimiter refuses unlogged: "yes" instead of reading it as false', async () => {
    for (const unlogged of ['yes', 1, 'true', null]) {
      const err = await refusal(
        () => new RateLimiter(db.pool, { limit: 1, periodMs: 1000, unlogged } as never),
      );
      expect(err.argument).toBe('options.unlogged');
    }
    const limiter = new RateLimiter(db.pool, { limit: 1, periodMs: 1000, unlogged: true });
    expect(limiter.options.unlogged).toBe(true);
    expect(Object.isFrozen(limiter.options)).toBe(true);
  });

  it("LeaderElection's limits are the lease limits", async () => {
    const over = 'x'.repeat(MAX_LEASE_NAME_BYTES + 1);
    expect((await refusal(() => new LeaderElection(db.pool, { name: over }))).message).toMatch(
      `the limit is ${MAX_LEASE_NAME_BYTES} bytes`,
    );
    for (const ttlMs of [MIN_LEASE_TTL_MS - 1, MAX_LEASE_TTL_MS + 1]) {
      const err = await refusal(() => new LeaderElection(db.pool, { name: 'n', ttlMs }));
      expect(err.message).toMatch(`between ${MIN_LEASE_TTL_MS} and ${MAX_LEASE_TTL_MS}`);
    }
    new LeaderElection(db.pool, {
      name: 'x'.repeat(MAX_LEASE_NAME_BYTES),
      ttlMs: MIN_LEASE_TTL_MS,
    });
  });

  it('KvStore checks keys and ttlMs with the shared checks', async () => {
    const kv = new KvStore(db.pool);
    expect((await refusal(() => kv.getMany('k' as never))).message).toMatch(
      /keys: must be an array of strings, got "k"/,
    );
    expect((await refusal(() => kv.deleteMany(['a', '']))).argument).toBe('keys[1]');
    expect((await refusal(() => kv.set('k', 'v', { ttlMs: 0 }))).message).toMatch(
      /options\.ttlMs: must be between 1 and/,
    );
    expect((await refusal(() => kv.setMany([{ key: 'k', value: 'v', ttlMs: 1.5 }]))).argument).toBe(
      'entries[0].ttlMs',
    );
  });
});
