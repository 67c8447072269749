import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  ConnectionError,
  DatabaseError,
  InternalError,
  PgcoordError,
  ValidationError,
  backoffDelayMs,
  coerceError,
  withRetry,
} from '../../src/index.js';
import { RETRYABLE_ERRNOS, RETRYABLE_SQLSTATES, retryReason } from '../../src/core/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase({ migrate: false });

/** A real server error with SQLSTATE `code`, raised by the server itself. */
async function serverError(code: string): Promise<unknown> {
  return db.pool
    .query(`DO $$ BEGIN RAISE EXCEPTION 'raised %', '${code}' USING ERRCODE = '${code}'; END $$`)
    .catch((e: unknown) => e);
}

describe('the table of retryable failures', () => {
  it('sets retryable from the table for every SQLSTATE in it, raised by a real server', async () => {
    for (const [code, reason] of Object.entries(RETRYABLE_SQLSTATES)) {
      const err = coerceError(await serverError(code));
      expect(err.retryable, code).toBe(true);
      expect(err, code).toBeInstanceOf(reason === 'connection' ? ConnectionError : DatabaseError);
      expect((err as DatabaseError).sqlState, code).toBe(code);
    }
  });

  it('takes every code of class 08 but a protocol violation; refusals are not retryable', async () => {
    for (const code of ['08000', '08003', '08006', '08001', '08004']) {
      expect(coerceError(await serverError(code)), code).toBeInstanceOf(ConnectionError);
    }
    for (const code of ['08P01', '23505', '42P01', '57014', '53200']) {
      const err = coerceError(await serverError(code));
      expect(err, code).toBeInstanceOf(DatabaseError);
      expect(err.retryable, code).toBe(false);
    }
    expect(retryReason({ sqlState: '08P01' })).toBeUndefined();
    expect(retryReason({ sqlState: 'XX000' })).toBeUndefined();
  });

  it('reads network errors by errno and by message, with no SQLSTATE', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: 1, user: 'x', database: 'x' });
    const refused = await client.connect().catch((e: unknown) => e);
    expect((refused as { code?: string }).code).toBe('ECONNREFUSED');
    expect(coerceError(refused)).toBeInstanceOf(ConnectionError);
    for (const errno of Object.keys(RETRYABLE_ERRNOS)) {
      const e = Object.assign(new Error('socket trouble'), { code: errno });
      expect(coerceError(e).retryable, errno).toBe(true);
    }
    expect(coerceError(new Error('Connection terminated unexpectedly')).retryable).toBe(true);
    // Five capitals, like a SQLSTATE, yet a socket's errno.
    const pipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' });
    expect(coerceError(pipe)).toBeInstanceOf(ConnectionError);
    const perm = Object.assign(new Error('operation not permitted'), {
      code: 'EPERM',
      syscall: 'kill',
    });
    expect(coerceError(perm)).toBeInstanceOf(InternalError);
  });

  it('turns anything else into a non-retryable InternalError, not a DatabaseError', () => {
    const bug = new TypeError('q.query is not a function');
    const err = coerceError(bug);
    expect(err).toBeInstanceOf(InternalError);
    expect(err.code).toBe('PGCOORD_INTERNAL');
    expect(err.retryable).toBe(false);
    expect(err.cause).toBe(bug);
    expect(err.message).toBe('q.query is not a function');
    expect(coerceError('weird')).toBeInstanceOf(InternalError);
    const fsError = Object.assign(new Error('no such file'), { code: 'ENOENT' });
    expect(coerceError(fsError)).toBeInstanceOf(InternalError);
  });
});

describe('backoffDelayMs', () => {
  const opts = { baseMs: 100, maxMs: 1_000 } as const;

  it('doubles per attempt up to the cap, before jitter', () => {
    const delays = [1, 2, 3, 4, 5, 6].map((a) => backoffDelayMs(a, { ...opts, jitter: 'none' }));
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    // No overflow to Infinity or NaN however many attempts.
    expect(backoffDelayMs(10_000, { ...opts, jitter: 'none' })).toBe(1000);
    expect(backoffDelayMs(0, { ...opts, jitter: 'none' })).toBe(100);
  });

  it('full jitter spans 0 .. the delay; equal jitter spans half .. the delay', () => {
    expect(backoffDelayMs(3, { ...opts, jitter: 'full', random: () => 0 })).toBe(0);
    expect(backoffDelayMs(3, { ...opts, jitter: 'full', random: () => 0.5 })).toBe(200);
    expect(backoffDelayMs(3, { ...opts, random: () => 0.999 })).toBe(400); // full is the default
    expect(backoffDelayMs(3, { ...opts, jitter: 'equal', random: () => 0 })).toBe(200);
    expect(backoffDelayMs(3, { ...opts, jitter: 'equal', random: () => 0.999 })).toBe(400);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelayMs(5, { ...opts, jitter: 'equal' });
      expect(d).toBeGreaterThanOrEqual(500);
      expect(d).toBeLessThanOrEqual(1000);
    }
  });
});

describe('withRetry', () => {
  const fast = { baseMs: 0, maxMs: 0 };

  it('runs again after a real broken connection, and returns the answer', async () => {
    const pool = db.newPool({ max: 1 });
    const attempts: string[] = [];
    const result = await withRetry(async (attempt) => {
      const client = await pool.connect();
      let broken: Error | undefined;
      client.on('error', (e) => (broken = e));
      try {
        if (attempt === 1) {
          const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
          await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
        }
        const { rows } = await client.query('SELECT 42 AS answer');
        attempts.push('ok');
        return rows[0].answer as number;
      } catch (err) {
        broken ??= err as Error;
        attempts.push(coerceError(err).code);
        throw err;
      } finally {
        client.release(broken);
      }
    }, fast);
    expect(result).toBe(42);
    expect(attempts).toEqual(['PGCOORD_CONNECTION', 'ok']);
  });

  it('retries a deadlock or serialization failure, never a refusal', async () => {
    let calls = 0;
    await expect(
      withRetry(async () => {
        calls++;
        throw await serverError('23505');
      }, fast),
    ).rejects.toMatchObject({ code: 'PGCOORD_DATABASE', sqlState: '23505' });
    expect(calls).toBe(1);

    calls = 0;
    const seen: number[] = [];
    const value = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw await serverError(calls === 1 ? '40P01' : '40001');
        return 'done';
      },
      { ...fast, onRetry: ({ attempt }) => seen.push(attempt) },
    );
    expect(value).toBe('done');
    expect(seen).toEqual([1, 2]);
  });

  it('retryOn narrows what is retried: a claim retries a deadlock, never a broken link', async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new ConnectionError('link broke mid-statement');
        },
        { ...fast, retryOn: ['conflict'] },
      ),
    ).rejects.toBeInstanceOf(ConnectionError);
    expect(calls).toBe(1);
    calls = 0;
    const value = await withRetry(
      async () => {
        if (++calls === 1) throw await serverError('40P01');
        return 'claimed';
      },
      { ...fast, retryOn: ['conflict'] },
    );
    expect([value, calls]).toEqual(['claimed', 2]);
  });

  it('gives up after `retries` retries with the last failure, as a PgcoordError', async () => {
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw Object.assign(new Error(`reset ${calls}`), { code: 'ECONNRESET' });
      },
      { ...fast, retries: 2 },
    ).catch((e: unknown) => e);
    expect(calls).toBe(3);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toBe('reset 3');
    calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new ConnectionError('down');
        },
        { retries: 0 },
      ),
    ).rejects.toBeInstanceOf(ConnectionError);
    expect(calls).toBe(1);
  });

  it('stops waiting when aborted: the last failure is thrown and fn is not called again', async () => {
    const controller = new AbortController();
    let calls = 0;
    const run = withRetry(
      async () => {
        calls++;
        throw new ConnectionError('down');
      },
      {
        baseMs: 3_600_000,
        maxMs: 3_600_000,
        jitter: 'none',
        signal: controller.signal,
        // The wait begins right after this: abort it.
        onRetry: () => queueMicrotask(() => controller.abort()),
      },
    );
    await expect(run).rejects.toThrow('down');
    expect(calls).toBe(1);

    const aborted = AbortSignal.abort(new Error('shutting down'));
    let called = false;
    await expect(
      withRetry(
        async () => {
          called = true;
        },
        { signal: aborted },
      ),
    ).rejects.toThrow('shutting down');
    expect(called).toBe(false);
  });

  it('refuses bad options before calling fn, naming the option and the limit', async () => {
    const fn = async () => 1;
    const cases: Array<[object, RegExp]> = [
      [{ retries: -1 }, /options\.retries: must be between 0 and 1000, got -1/],
      [{ retries: 1.5 }, /options\.retries: must be an integer/],
      [{ baseMs: 10, maxMs: 5 }, /options\.maxMs: must be between 10 and 3600000, got 5/],
      [{ jitter: 'some' }, /options\.jitter: must be one of full, equal, none, got "some"/],
      [{ signal: {} }, /options\.signal: must be an AbortSignal/],
      [{ retryOn: ['network'] }, /options\.retryOn: must be an array of connection, conflict/],
    ];
    for (const [options, message] of cases) {
      const err = await withRetry(fn, options as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as PgcoordError).message).toMatch(message);
    }
    await expect(withRetry(null as never)).rejects.toThrow(/fn: must be a function, got null/);
  });
});
