import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  ClosedError,
  ConnectionError,
  Lifecycle,
  TestSignal,
  noopLogger,
  reportError,
  type Logger,
  type PgcoordError,
  type Service,
} from '../../src/core/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase({ migrate: false });

/**
 * A background object built the documented way: a loop that runs a statement, waits on the
 * lifecycle's signal between rounds, and whose stop waits for the statement in flight.
 */
class Poller implements Service {
  readonly events: string[] = [];
  readonly rounds = new TestSignal<number>('round');
  private readonly lifecycle: Lifecycle;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly sql: string,
    options: { restartable?: boolean; failStart?: () => boolean } = {},
  ) {
    this.lifecycle = new Lifecycle(
      { name: 'poller', restartable: options.restartable },
      {
        start: async (signal) => {
          this.events.push('start');
          await this.pool.query('SELECT 1');
          if (options.failStart?.()) throw new ConnectionError('refused');
          this.loop = this.run(signal);
        },
        stop: async () => {
          this.events.push('stop');
          await this.loop;
          this.events.push('drained');
        },
      },
    );
  }

  get signals() {
    return this.lifecycle.signals;
  }
  get state() {
    return this.lifecycle.state;
  }
  start() {
    return this.lifecycle.start();
  }
  stop() {
    return this.lifecycle.stop();
  }
  [Symbol.asyncDispose]() {
    return this.lifecycle.stop();
  }

  private async run(signal: AbortSignal): Promise<void> {
    for (let round = 1; !signal.aborted; round++) {
      this.events.push(`round ${round}`);
      await this.pool.query(this.sql);
      this.events.push(`round ${round} done`);
      this.rounds.signal(round);
      // Between rounds: wait until the next tick or the stop, whichever comes first.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5);
        signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
    }
  }
}

describe('Lifecycle', () => {
  it('stop() waits for the statement in flight, after start(); signals arrive in order', async () => {
    // The round blocks on an advisory lock the test holds: it is in flight until we let go.
    const holder = await db.pool.connect();
    await holder.query('SELECT pg_advisory_lock(42)');
    const poller = new Poller(db.pool, 'SELECT pg_advisory_lock(42), pg_advisory_unlock(42)');
    await poller.start();
    await poller.signals.started.wait();
    expect(poller.state).toBe('running');
    const stopped = poller.stop().then(() => poller.events.push('stop resolved'));
    expect(poller.state).toBe('stopping');
    // The stop hook has begun and is waiting on the round.
    expect(poller.events).toEqual(['start', 'round 1', 'stop']);
    poller.events.push('lock released');
    await holder.query('SELECT pg_advisory_unlock(42)');
    holder.release();
    await stopped;
    await poller.signals.stopped.wait();
    expect(poller.events).toEqual([
      'start',
      'round 1',
      'stop',
      'lock released',
      'round 1 done',
      'drained',
      'stop resolved',
    ]);
    expect(poller.state).toBe('stopped');
  });

  it('start and stop are idempotent; stop before start is fine; concurrent calls share one run', async () => {
    const poller = new Poller(db.pool, 'SELECT 1');
    await poller.stop();
    expect(poller.events).toEqual([]);
    expect(poller.signals.stopped.count).toBe(0);
    const a = poller.start();
    const b = poller.start();
    expect(b).toBe(a);
    await Promise.all([a, b, poller.start()]);
    await poller.rounds.wait();
    await Promise.all([poller.stop(), poller.stop()]);
    await poller.stop();
    expect(poller.events.filter((e) => e === 'start' || e === 'stop')).toEqual(['start', 'stop']);
    expect(poller.signals.started.count).toBe(1);
    expect(poller.signals.stopped.count).toBe(1);
  });

  it('a start racing a stop begins after it; start after stop starts again', async () => {
    const poller = new Poller(db.pool, 'SELECT 1');
    await poller.start();
    const stopping = poller.stop();
    const restarting = poller.start();
    await Promise.all([stopping, restarting]);
    expect(poller.state).toBe('running');
    expect(poller.events.filter((e) => !e.startsWith('round'))).toEqual([
      'start',
      'stop',
      'drained',
      'start',
    ]);
    await poller.stop();
  });

  it('stop() during start() aborts the start and runs the stop hook once it settles', async () => {
    const poller = new Poller(db.pool, 'SELECT 1');
    const starting = poller.start();
    const stopping = poller.stop();
    await Promise.all([starting, stopping]);
    expect(poller.state).toBe('stopped');
    // The loop saw the aborted signal: no round ran.
    expect(poller.events).toEqual(['start', 'stop', 'drained']);
    expect(poller.signals.started.count).toBe(0);
  });

  it('a failed start leaves it stopped and startable; a non-restartable one refuses a restart', async () => {
    let fail = true;
    const poller = new Poller(db.pool, 'SELECT 1', { failStart: () => fail });
    await expect(poller.start()).rejects.toBeInstanceOf(ConnectionError);
    expect(poller.state).toBe('stopped');
    fail = false;
    await poller.start();
    expect(poller.state).toBe('running');
    await poller.stop();

    const once = new Poller(db.pool, 'SELECT 1', { restartable: false });
    await once.start();
    await once.stop();
    await expect(once.start()).rejects.toBeInstanceOf(ClosedError);
  });

  it('await using stops it at the end of the scope', async () => {
    let outside: Poller;
    {
      await using poller = new Poller(db.pool, 'SELECT 1');
      outside = poller;
      await poller.start();
      await poller.rounds.wait();
    }
    expect(outside.state).toBe('stopped');
    expect(outside.events.at(-1)).toBe('drained');
  });
});

describe('TestSignal', () => {
  it('hands values out in order, whether signalled before or after the wait', async () => {
    const s = new TestSignal<string>('s');
    s.signal('a');
    const next = s.wait();
    const later = s.wait();
    s.signal('b');
    expect(await next).toBe('a');
    expect(await later).toBe('b');
    expect(s.count).toBe(2);
    await expect(s.wait({ timeoutMs: 10 })).rejects.toThrow(/test signal "s"/);
  });

  it('keeps at most `capacity` unclaimed values, dropping the oldest', async () => {
    const s = new TestSignal<number>('bounded', 3);
    for (let i = 1; i <= 5; i++) s.signal(i);
    expect([await s.wait(), await s.wait(), await s.wait()]).toEqual([3, 4, 5]);
  });
});

describe('reportError', () => {
  interface Events {
    error: [err: PgcoordError];
  }

  function recordingLogger(): { logger: Logger; lines: unknown[][] } {
    const lines: unknown[][] = [];
    return {
      lines,
      logger: { ...noopLogger, error: (obj, msg) => lines.push([obj, msg]) },
    };
  }

  it('emits to listeners when there are some, logs otherwise; never throws', () => {
    const emitter = new EventEmitter<Events>();
    const { logger, lines } = recordingLogger();
    const first = reportError(emitter, logger, new Error('boom'), 'round failed', { round: 1 });
    expect(first.code).toBe('PGCOORD_INTERNAL');
    expect(lines).toMatchObject([[{ round: 1, code: 'PGCOORD_INTERNAL' }, 'round failed']]);

    const seen: PgcoordError[] = [];
    emitter.on('error', (e) => seen.push(e));
    reportError(emitter, logger, new ConnectionError('down'), 'round failed');
    expect(seen.map((e) => e.message)).toEqual(['down']);
    expect(lines).toHaveLength(1);

    emitter.removeAllListeners('error');
    emitter.on('error', () => {
      throw new Error('listener bug');
    });
    expect(() => reportError(emitter, logger, new Error('x'), 'round failed')).not.toThrow();
    expect(lines[1]?.[1]).toMatch(/an 'error' listener threw/);
  });
});
