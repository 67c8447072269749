import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';
import type { Queryable } from '../../src/core/queryable.js';
import { Listener } from '../../src/listen/listener.js';
import {
  MAX_PAYLOAD_BYTES,
  notify,
  Notifier,
  purgeListenerPayloads,
} from '../../src/listen/notify.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
let listener: Listener;
/** Everything the listener received, per channel. */
const received = new Map<string, string[]>();
const handlerErrors: unknown[] = [];

function track(channel: string): string[] {
  const list: string[] = [];
  received.set(channel, list);
  listener.handle(channel, (payload) => void list.push(payload));
  return list;
}

beforeAll(async () => {
  listener = new Listener({ connection: db.url });
  listener.on('handler:error', (e) => handlerErrors.push(e.error));
  await listener.start();
});

afterAll(async () => {
  await listener.stop();
});

async function storedCount(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pgcoord.listener_payloads`,
  );
  return rows[0]!.n;
}

describe('notify', () => {
  it('sends strings and JSON values', async () => {
    const got = track('json');
    await listener.ready();
    await notify(db.pool, 'json', 'plain');
    await notify(db.pool, 'json', { id: 42, tags: ['a', 'b'], ok: true, none: null });
    await notify(db.pool, 'json', 7);
    await notify(db.pool, 'json');
    await waitFor(() => got.length === 4);
    expect(got[0]).toBe('plain');
    expect(JSON.parse(got[1]!)).toEqual({ id: 42, tags: ['a', 'b'], ok: true, none: null });
    expect(got.slice(2)).toEqual(['7', '']);
  });

  it(`accepts ${MAX_PAYLOAD_BYTES} bytes and refuses more with a ValidationError, sending nothing`, async () => {
    const got = track('limit');
    await listener.ready();
    const max = 'é'.repeat((MAX_PAYLOAD_BYTES - 1) / 2) + 'x'; // multibyte: bytes, not chars
    await notify(db.pool, 'limit', max);
    const over = max + 'y';
    const err = await notify(db.pool, 'limit', over).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).argument).toBe('payload');
    expect((err as Error).message).toMatch(/8000 bytes.*7999|largePayloads/);
    await notify(db.pool, 'limit', 'marker');
    await waitFor(() => got.includes('marker'));
    expect(got).toEqual([max, 'marker']);
  });

  it('refuses bad channels and payloads before SQL', async () => {
    const bad: Array<[unknown, unknown]> = [
      ['', 'x'],
      ['a'.repeat(64), 'x'],
      ['nul\u0000', 'x'],
      ['ok', 'nul\u0000'],
      ['ok', '\ud800lone'],
      ['ok', () => 1],
      ['ok', undefined as unknown as string],
      [42, 'x'],
    ];
    let queries = 0;
    const counting: Queryable = {
      query: (text: string, values?: unknown[]) => {
        queries++;
        return db.pool.query(text, values);
      },
    };
    for (const [channel, payload] of bad) {
      if (payload === undefined) continue; // undefined means "no payload": valid
      await expect(notify(counting, channel as string, payload as string)).rejects.toBeInstanceOf(
        ValidationError,
      );
    }
    expect(queries).toBe(0);
  });

  it('refuses a payload JSON cannot carry (NaN, Infinity, BigInt, a cycle), naming payload', async () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const bad: unknown[] = [
      NaN,
      Infinity,
      -Infinity,
      { a: NaN },
      [1, Infinity],
      { nested: { deep: [-Infinity] } },
      10n,
      { n: 10n },
      cyclic,
    ];
    const notifier = new Notifier(db.pool);
    for (const payload of bad) {
      for (const send of [
        () => notify(db.pool, 'c', payload as never),
        () => notifier.notify('c', payload as never),
      ]) {
        const err = await send().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, String(payload)).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).argument).toBe('payload');
      }
    }
    // Numbers JSON can carry still go through.
    await notify(db.pool, 'json_ok', { n: 1.5, big: Number.MAX_VALUE, neg: -0 });
  });

  it('coalesces concurrent calls into few statements, and delivers every one', async () => {
    const got = track('burst');
    await listener.ready();
    let statements = 0;
    const counting: Queryable = {
      query: (text: string, values?: unknown[]) => {
        statements++;
        return db.pool.query(text, values);
      },
    };
    const notifier = new Notifier(counting);
    await Promise.all(Array.from({ length: 300 }, (_, i) => notifier.notify('burst', `n${i}`)));
    expect(statements).toBeLessThanOrEqual(3);
    await waitFor(() => got.length === 300);
    // Coalesced, yet in submission order.
    expect(got).toEqual(Array.from({ length: 300 }, (_, i) => `n${i}`));
  });

  it('coalesces notify(pool) calls too', async () => {
    const got = track('burst2');
    await listener.ready();
    await Promise.all(Array.from({ length: 200 }, (_, i) => notify(db.pool, 'burst2', `${i}`)));
    await waitFor(() => got.length === 200);
    expect(new Set(got).size).toBe(200);
  });

  it("runs in the caller's transaction with tx: delivered on commit, dropped on rollback", async () => {
    const got = track('txn');
    await listener.ready();
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await notify(db.pool, 'txn', 'rolled back', { tx: client });
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await notify(client, 'txn', 'committed');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await notify(db.pool, 'txn', 'marker');
    await waitFor(() => got.includes('marker'));
    expect(got).toEqual(['committed', 'marker']);
  });

  it('stores large payloads when asked; the handler sees the payload itself', async () => {
    const got = track('big');
    await listener.ready();
    const big = JSON.stringify({ blob: 'z'.repeat(100_000), n: 'ünï' });
    const before = await storedCount();
    await notify(db.pool, 'big', big, { largePayloads: true });
    await notify(db.pool, 'big', 'small', { largePayloads: true }); // small ones go inline
    await waitFor(() => got.length === 2);
    expect(got[0]).toBe(big);
    expect(got[1]).toBe('small');
    expect(await storedCount()).toBe(before + 1);
  });

  it('an iterator sees a stored large payload as the payload itself', async () => {
    const it = listener.iterate('big-iter');
    await listener.ready();
    const big = 'i'.repeat(20_000);
    await notify(db.pool, 'big-iter', big, { largePayloads: true });
    const { value } = await it.next();
    expect(value?.payload).toBe(big);
    await it.return!();
  });

  it('cleans stored payloads up by age on the server clock', async () => {
    const big = 'q'.repeat(9_000);
    await notify(db.pool, 'nobody', big, { largePayloads: true });
    await notify(db.pool, 'nobody', big, { largePayloads: true });
    const total = await storedCount();
    expect(total).toBeGreaterThanOrEqual(2);
    // Nothing is old yet.
    expect(await purgeListenerPayloads(db.pool)).toBe(0);
    // Age two rows by two hours on the server's clock.
    await db.pool.query(
      `UPDATE pgcoord.listener_payloads SET created_at = now() - interval '2 hours'
       WHERE id IN (SELECT id FROM pgcoord.listener_payloads ORDER BY created_at LIMIT 2)`,
    );
    // A later large notification purges expired rows in the same statement.
    await notify(db.pool, 'nobody', big, { largePayloads: true });
    expect(await storedCount()).toBe(total - 2 + 1);
    // And an explicit purge with a short age takes everything older than that.
    await db.pool.query(
      `UPDATE pgcoord.listener_payloads SET created_at = now() - interval '1 minute'`,
    );
    expect(await purgeListenerPayloads(db.pool, { olderThanMs: 30_000 })).toBe(total - 1);
    expect(await storedCount()).toBe(0);
  });

  it('reports a stored payload that is gone as handler:error', async () => {
    const got = track('gone');
    await listener.ready();
    handlerErrors.length = 0;
    const client = await db.pool.connect();
    try {
      // Store, then delete before commit is impossible to observe; instead delete right after
      // inside the same transaction so the notification points at nothing.
      await client.query('BEGIN');
      await notify(client, 'gone', 'w'.repeat(10_000), { largePayloads: true });
      await client.query('DELETE FROM pgcoord.listener_payloads');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await waitFor(() => handlerErrors.length === 1);
    expect((handlerErrors[0] as Error).name).toBe('NotFoundError');
    expect(got).toEqual([]);
  });

  it('fuzz: any valid channel and payload round-trips exactly; invalid ones throw ValidationError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: 'binary', minLength: 0, maxLength: 40 }),
        fc.string({ unit: 'binary', maxLength: 200 }),
        async (channel, payload) => {
          const bytes = Buffer.byteLength(channel);
          const valid = channel.length > 0 && bytes <= 63 && !channel.includes('\u0000');
          const payloadValid = !payload.includes('\u0000');
          if (!valid || !payloadValid) {
            await expect(notify(db.pool, channel, payload)).rejects.toBeInstanceOf(ValidationError);
            return;
          }
          const got: string[] = [];
          listener.handle(channel, (p, n) => {
            if (n.channel === channel) got.push(p);
          });
          await listener.ready();
          await notify(db.pool, channel, payload);
          await waitFor(() => got.length === 1, { timeoutMs: 5_000 });
          expect(got[0]).toBe(payload);
          listener.unhandle(channel);
        },
      ),
      { numRuns: 60 },
    );
  });
});
