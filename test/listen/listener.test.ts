import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ClosedError, ValidationError, type PgcoordError } from '../../src/core/errors.js';
import { Listener, type ListenerOptions, type Notification } from '../../src/listen/listener.js';
import { notify } from '../../src/listen/notify.js';
import { useTestDatabase } from '../helpers/db.js';
import { freePort } from '../helpers/pg-instance.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const listeners: Listener[] = [];

/** A listener on this file's database with a unique application_name, stopped after the test. */
function makeListener(options: ListenerOptions = {}): { listener: Listener; app: string } {
  const app = `lt_${randomBytes(4).toString('hex')}`;
  const listener = new Listener({
    connection: db.url,
    applicationName: app,
    reconnectDelayMs: 20,
    maxReconnectDelayMs: 200,
    ...options,
  });
  listener.on('error', () => undefined);
  listeners.push(listener);
  return { listener, app };
}

afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
});

/** Terminates this file's backends with the given application_name; returns how many. */
async function terminate(app: string): Promise<number> {
  const { rows } = await db.pool.query<{ ok: boolean }>(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
     WHERE application_name = $1 AND datname = $2`,
    [app, db.name],
  );
  return rows.length;
}

async function backendPid(app: string): Promise<number | undefined> {
  const { rows } = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = $2`,
    [app, db.name],
  );
  return rows[0]?.pid;
}

describe('Listener', () => {
  it('delivers notifications to the handler of their channel, in order', async () => {
    const { listener } = makeListener();
    const seen: string[] = [];
    listener.handle('orders', async (payload) => {
      // An async handler that yields: order must still hold.
      await new Promise((r) => setImmediate(r));
      seen.push(payload);
    });
    await listener.start();
    expect(listener.listening).toBe(true);
    for (let i = 0; i < 50; i++) await db.pool.query(`NOTIFY orders, '${i}'`);
    await waitFor(() => seen.length === 50);
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
  });

  it('quotes channel names exactly: case, spaces, quotes, semicolons, unicode, 63 bytes', async () => {
    const names = [
      'Case',
      'case',
      'with space',
      'quo"te',
      "apos'trophe",
      'semi;colon; DROP TABLE x',
      'ünïcødé',
      'x'.repeat(63),
    ];
    const { listener } = makeListener();
    const got = new Map<string, string[]>();
    for (const name of names) {
      listener.handle(name, (payload, n) => {
        expect(n.channel).toBe(name);
        got.set(name, [...(got.get(name) ?? []), payload]);
      });
    }
    await listener.start();
    for (const name of names) await notify(db.pool, name, `to ${name}`);
    await waitFor(() => got.size === names.length);
    for (const name of names) expect(got.get(name)).toEqual([`to ${name}`]);
    expect(() => listener.handle('y'.repeat(64), () => undefined)).toThrow(ValidationError);
    expect(() => listener.handle('', () => undefined)).toThrow(ValidationError);
    expect(() => listener.handle('a\u0000b', () => undefined)).toThrow(ValidationError);
  });

  it('reports handler errors (sync and async) as handler:error and keeps going', async () => {
    const logged: string[] = [];
    const { listener } = makeListener({
      logger: {
        info: (_o, msg) => void logged.push(`info ${msg}`),
        warn: (_o, msg) => void logged.push(`warn ${msg}`),
      },
    });
    const errors: Array<{ channel: string; error: unknown }> = [];
    listener.on('handler:error', (e) => errors.push(e));
    const ok: string[] = [];
    listener.handle('flaky', async (payload) => {
      if (payload === 'throw') throw new Error('sync-ish');
      if (payload === 'reject') return Promise.reject(new Error('async'));
      ok.push(payload);
    });
    await listener.start();
    for (const p of ['a', 'throw', 'b', 'reject', 'c']) await db.pool.query(`NOTIFY flaky, '${p}'`);
    await waitFor(() => ok.length === 3 && errors.length === 2);
    expect(ok).toEqual(['a', 'b', 'c']);
    expect(errors.map((e) => (e.error as Error).message)).toEqual(['sync-ish', 'async']);
    expect(logged).toContain('info pgcoord listener: listening');
    expect(logged.filter((m) => m === 'warn pgcoord listener: handler failed')).toHaveLength(2);
    expect(listener.listening).toBe(true);
  });

  it('runs handlers concurrently when asked', async () => {
    const { listener } = makeListener();
    let running = 0;
    let peak = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    listener.handle(
      'parallel',
      async () => {
        started++;
        running++;
        peak = Math.max(peak, running);
        await gate;
        running--;
      },
      { concurrency: 4 },
    );
    await listener.start();
    for (let i = 0; i < 6; i++) await db.pool.query(`NOTIFY parallel, '${i}'`);
    await waitFor(() => started === 4);
    expect(running).toBe(4);
    release();
    await waitFor(() => started === 6 && running === 0);
    expect(peak).toBe(4);
  });

  it('after pg_terminate_backend: reconnects, re-LISTENs, and the backlog loses nothing', async () => {
    await db.pool.query(`CREATE TABLE events (id serial PRIMARY KEY, body text NOT NULL)`);
    const { listener, app } = makeListener();
    const handled = new Set<number>();
    let lastId = 0;
    // The pgxlisten pattern: the notification is a wake-up; the table is the truth.
    const drain = async () => {
      const { rows } = await db.pool.query<{ id: number }>(
        `SELECT id FROM events WHERE id > $1 ORDER BY id`,
        [lastId],
      );
      for (const r of rows) {
        handled.add(r.id);
        lastId = r.id;
      }
    };
    listener.handle('events', drain, { backlog: drain });
    const connects: boolean[] = [];
    listener.on('connect', (c) => connects.push(c.reconnected));
    await listener.start();
    const firstPid = await backendPid(app);
    expect(firstPid).toBeDefined();

    const insert = (body: string) =>
      db.pool.query(
        `WITH i AS (INSERT INTO events (body) VALUES ($1) RETURNING id) SELECT pg_notify('events', id::text) FROM i`,
        [body],
      );
    await insert('before');
    await waitFor(() => handled.size === 1);

    const disconnected = nextEvent(listener, 'disconnect');
    expect(await terminate(app)).toBe(1);
    await disconnected;
    // Sent while nobody listens: only the backlog can find these.
    for (let i = 0; i < 5; i++) await insert(`during ${i}`);
    await waitFor(() => connects.length === 2, { message: 'reconnect' });
    expect(connects).toEqual([false, true]);
    const secondPid = await backendPid(app);
    expect(secondPid).not.toBe(firstPid);
    await insert('after');
    await waitFor(() => handled.size === 7, { message: 'all 7 events handled' });
    expect([...handled].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('dials afresh through connect() on every reconnect', async () => {
    const app = `lt_dial_${randomBytes(4).toString('hex')}`;
    let dials = 0;
    const listener = new Listener({
      reconnectDelayMs: 10,
      maxReconnectDelayMs: 50,
      connect: async () => {
        dials++;
        const c = new pg.Client({ connectionString: db.url, application_name: app });
        await c.connect();
        return c;
      },
    });
    listener.on('error', () => undefined);
    listeners.push(listener);
    const got: string[] = [];
    listener.handle('dial', (p) => void got.push(p));
    await listener.start();
    expect(dials).toBe(1);
    const back = nextEvent(listener, 'connect');
    await terminate(app);
    await back;
    expect(dials).toBe(2);
    await db.pool.query(`NOTIFY dial, 'x'`);
    await waitFor(() => got.length === 1);
  });

  it('handles 1,000 channels on one listener, across a reconnect', async () => {
    const { listener, app } = makeListener();
    const got = new Set<string>();
    const names = Array.from({ length: 1000 }, (_, i) => `ch_${i}`);
    for (const n of names) listener.handle(n, (p) => void got.add(p));
    await listener.start();
    await Promise.all(names.map((n) => notify(db.pool, n, n)));
    await waitFor(() => got.size === 1000, { message: '1000 notifications' });

    const back = nextEvent(listener, 'connect');
    await terminate(app);
    await back;
    got.clear();
    await Promise.all(names.map((n) => notify(db.pool, n, n)));
    await waitFor(() => got.size === 1000, { message: '1000 notifications after reconnect' });
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`,
      [app],
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('unhandle during delivery: the running handler finishes, queued ones are dropped', async () => {
    const { listener } = makeListener();
    const got: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    listener.handle('busy', async (p) => {
      got.push(p);
      if (p === '1') await gate;
    });
    const other: string[] = [];
    listener.handle('other', (p) => void other.push(p));
    await listener.start();
    await db.pool.query(`NOTIFY busy, '1'; NOTIFY busy, '2'; NOTIFY busy, '3'`);
    await waitFor(() => got.length === 1);
    // Make sure 2 and 3 have arrived and are queued behind the blocked handler.
    await db.pool.query(`NOTIFY other, 'marker'`);
    await waitFor(() => other.length === 1);
    listener.unhandle('busy');
    expect(listener.channelNames).toEqual(['other']);
    let stopped = false;
    const stopping = listener.stop().then(() => (stopped = true));
    // stop() waits for the running handler.
    await new Promise((r) => setImmediate(r));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(got).toEqual(['1']);
  });

  it('handle() on a handled channel replaces the handler and keeps listening', async () => {
    const { listener } = makeListener();
    const first: string[] = [];
    const second: string[] = [];
    listener.handle('swap', (p) => void first.push(p));
    await listener.start();
    await db.pool.query(`NOTIFY swap, 'a'`);
    await waitFor(() => first.length === 1);
    listener.handle('swap', (p) => void second.push(p));
    await db.pool.query(`NOTIFY swap, 'b'`);
    await waitFor(() => second.length === 1);
    expect(first).toEqual(['a']);
    expect(second).toEqual(['b']);
  });

  it('unhandle UNLISTENs; handle again LISTENs again', async () => {
    const { listener, app } = makeListener();
    listener.handle('toggle', () => undefined);
    await listener.start();
    const listening = async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`,
        [app],
      );
      return rows[0]!.n;
    };
    expect(await listening()).toBe(1);
    listener.unhandle('toggle');
    const got: string[] = [];
    listener.handle('toggle', (p) => void got.push(p));
    await listener.ready();
    await db.pool.query(`NOTIFY toggle, 'again'`);
    await waitFor(() => got.length === 1);
  });

  it('refuses bad options and arguments with a ValidationError naming them', () => {
    const bad: Array<[ListenerOptions, string]> = [
      [{ reconnectDelayMs: -1 }, 'options.reconnectDelayMs'],
      [{ reconnectDelayMs: 500, maxReconnectDelayMs: 100 }, 'options.maxReconnectDelayMs'],
      [{ healthCheckIntervalMs: '1s' as unknown as number }, 'options.healthCheckIntervalMs'],
      [{ healthCheckTimeoutMs: 1.5 }, 'options.healthCheckTimeoutMs'],
      [{ connect: 5 as unknown as () => Promise<pg.Client> }, 'options.connect'],
      [{ connection: db.url, connectionString: db.url }, 'options.connectionString'],
      [{ applicationName: '' }, 'options.applicationName'],
      [{ schema: '' }, 'options.schema'],
    ];
    for (const [options, argument] of bad) {
      let caught: unknown;
      try {
        new Listener(options);
      } catch (err) {
        caught = err;
      }
      expect(caught, argument).toBeInstanceOf(ValidationError);
      expect((caught as ValidationError).argument).toBe(argument);
    }
    const listener = new Listener({ connection: db.url });
    const arg = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return (err as ValidationError).argument;
      }
      return undefined;
    };
    expect(arg(() => listener.handle('c', 'x' as unknown as () => void))).toBe('handler');
    expect(arg(() => listener.handle('c', () => undefined, { concurrency: 0 }))).toBe(
      'options.concurrency',
    );
    expect(
      arg(() => listener.handle('c', () => undefined, { backlog: 1 as unknown as () => void })),
    ).toBe('options.backlog');
    expect(arg(() => listener.iterate('c', { bufferSize: 0 }))).toBe('options.bufferSize');
    expect(arg(() => listener.iterate('c', { overflow: 'bogus' as unknown as 'error' }))).toBe(
      'options.overflow',
    );
    expect(listener.channelNames).toEqual([]);
  });

  it('retries forever with jittered exponential backoff under a cap; the first retry is immediate', async () => {
    const port = await freePort();
    const { listener } = makeListener({
      connection: `postgres://postgres@127.0.0.1:${port}/postgres`,
      reconnectDelayMs: 10,
      maxReconnectDelayMs: 80,
    });
    const delays: Array<{ attempt: number; delayMs: number }> = [];
    listener.on('reconnect', (r) => {
      delays.push(r);
      expect(r.error?.code).toBe('PGCOORD_CONNECTION');
    });
    void listener.start();
    await waitFor(() => delays.length >= 10, { message: '10 reconnect attempts' });
    await listener.stop();
    expect(delays[0]).toMatchObject({ attempt: 1, delayMs: 0 });
    for (const { attempt, delayMs } of delays.slice(1)) {
      const cap = Math.min(80, 10 * 2 ** (attempt - 2));
      expect(delayMs).toBeGreaterThanOrEqual(cap / 2 - 1);
      expect(delayMs).toBeLessThanOrEqual(cap + 1);
    }
    expect(Math.max(...delays.map((d) => d.delayMs))).toBeLessThanOrEqual(80);
    expect(delays.map((d) => d.attempt)).toEqual(delays.map((_, i) => i + 1));
  });

  it('stop() during a reconnect wait returns before the wait is over and leaves nothing open', async () => {
    const port = await freePort(); // nothing listens there: every dial is refused
    const { listener } = makeListener({
      connection: `postgres://postgres@127.0.0.1:${port}/postgres`,
      // The second attempt waits 10 to 20 s: stop() must not sit that out.
      reconnectDelayMs: 20_000,
      maxReconnectDelayMs: 20_000,
    });
    const timers: NodeJS.Timeout[] = [];
    const waits: Array<Promise<'wait over'>> = [];
    listener.on('reconnect', (r) => {
      // When this attempt's wait would be over: the test's signal, not an assertion on time.
      waits.push(
        new Promise((resolve) => timers.push(setTimeout(resolve, r.delayMs, 'wait over'))),
      );
    });
    let startResolved = false;
    const starting = listener.start().then(() => (startResolved = true));
    try {
      await waitFor(() => waits.length >= 2, { message: 'a reconnect wait' });
      expect(startResolved).toBe(false);
      const first = await Promise.race([
        listener.stop().then(() => 'stopped' as const),
        waits[waits.length - 1]!,
      ]);
      expect(first).toBe('stopped');
      await starting;
      expect(listener.listening).toBe(false);
      await listener.stop(); // idempotent
    } finally {
      for (const t of timers) clearTimeout(t);
    }
  });

  it('stop() while a dial hangs (the server accepts but never answers) returns before the dial times out', async () => {
    const held = new Set<net.Socket>();
    let closed = 0;
    const blackhole = net.createServer((sock) => {
      held.add(sock);
      sock.resume(); // read (and ignore) what the client sends, so its close is seen
      sock.on('error', () => undefined);
      sock.on('close', () => closed++);
    });
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', () => r()));
    const port = (blackhole.address() as net.AddressInfo).port;
    const connectTimeoutMs = 20_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const { listener } = makeListener({
        connection: `postgres://postgres@127.0.0.1:${port}/postgres`,
        connectTimeoutMs,
      });
      // When the dial would give up by itself (counted from before it began): the test's
      // signal, not an assertion on time.
      const dialTimedOut = new Promise<'dial timed out'>(
        (resolve) => (timer = setTimeout(resolve, connectTimeoutMs, 'dial timed out')),
      );
      void listener.start();
      await waitFor(() => held.size === 1, { message: 'dial reached the blackhole' });
      const stopped = await Promise.race([
        listener.stop().then(() => 'stopped' as const),
        dialTimedOut,
      ]);
      expect(stopped).toBe('stopped');
      // The half-made connection was cut off, not left to its timeout.
      const cut = await Promise.race([
        waitFor(() => closed === 1, { timeoutMs: 30_000, message: 'dial socket closed' }).then(
          () => 'closed' as const,
        ),
        dialTimedOut,
      ]);
      expect(cut).toBe('closed');
    } finally {
      clearTimeout(timer);
      for (const s of held) s.destroy();
      await new Promise((r) => blackhole.close(r));
    }
  });

  it('stop() while the first dial is under way is not an error', async () => {
    const errors: Error[] = [];
    for (let i = 0; i < 5; i++) {
      const { listener } = makeListener();
      listener.on('error', (err) => errors.push(err));
      const started = listener.start();
      await listener.stop();
      await started;
    }
    expect(errors.map((e) => e.message)).toEqual([]);
  });

  it('stop before start, start twice, restart after stop', async () => {
    const { listener } = makeListener();
    await listener.stop();
    const got: string[] = [];
    listener.handle('again', (p) => void got.push(p));
    await Promise.all([listener.start(), listener.start()]);
    await listener.stop();
    await listener.start();
    await db.pool.query(`NOTIFY again, 'yes'`);
    await waitFor(() => got.length === 1);
  });

  it('is a core Service: test signals in order, await using stops it, start racing stop restarts', async () => {
    const { listener } = makeListener();
    const got: string[] = [];
    listener.handle('svc', (p) => void got.push(p));
    {
      await using scoped = listener;
      await scoped.start();
      await scoped.signals.started.wait();
      expect(scoped.listening).toBe(true);
    }
    await listener.signals.stopped.wait();
    expect(listener.listening).toBe(false);
    // A start() called while a stop() runs begins after it and is not swallowed by it.
    await listener.start();
    const stopping = listener.stop();
    const restarted = listener.start();
    await Promise.all([stopping, restarted]);
    expect(listener.listening).toBe(true);
    await db.pool.query(`NOTIFY svc, 'after'`);
    await waitFor(() => got.length === 1);
    expect(listener.signals.started.count).toBe(3);
  });

  it('detects a server that goes silent without closing the socket, within the health window', async () => {
    // A TCP proxy we can freeze: it keeps both sockets open but stops forwarding bytes, exactly
    // like a server host that vanished (no FIN, no RST).
    const target = new URL(db.url);
    let frozen = false;
    let queriesWhileFrozen = 0;
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      if (frozen) {
        sockets.add(client); // accept and never answer
        return;
      }
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      sockets.add(client);
      sockets.add(upstream);
      client.on('data', (d) => {
        if (!frozen) upstream.write(d);
        else queriesWhileFrozen += d.toString('latin1').split('SELECT 1').length - 1;
      });
      upstream.on('data', (d) => {
        if (!frozen) client.write(d);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close);
      upstream.on('error', close);
      client.on('close', close);
      upstream.on('close', close);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const port = (proxy.address() as net.AddressInfo).port;
    try {
      const url = new URL(db.url);
      url.port = String(port);
      const { listener } = makeListener({
        connection: url.toString(),
        healthCheckIntervalMs: 300,
        healthCheckTimeoutMs: 500,
        connectTimeoutMs: 500,
      });
      const got: string[] = [];
      listener.handle('silent', (p) => void got.push(p));
      await listener.start();
      await db.pool.query(`NOTIFY silent, 'one'`);
      await waitFor(() => got.length === 1);

      frozen = true;
      const lost = await nextEvent<{ error: PgcoordError | undefined }>(
        listener,
        'disconnect',
        10_000,
      );
      const queriesBeforeLoss = queriesWhileFrozen;
      // Found by the health query timing out, the first one that went unanswered (none is
      // repeated before giving up; one already in flight at the freeze may be the one).
      expect(lost.error?.code).toBe('PGCOORD_TIMEOUT');
      expect(queriesBeforeLoss).toBeLessThanOrEqual(1);
      // While frozen, dials time out and are retried.
      await nextEvent(listener, 'reconnect', 10_000);
      expect(listener.listening).toBe(false);

      frozen = false;
      for (const s of sockets) s.destroy();
      await waitFor(() => listener.listening, { timeoutMs: 15_000, message: 'back after thaw' });
      await db.pool.query(`NOTIFY silent, 'two'`);
      await waitFor(() => got.includes('two'));
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => proxy.close(r));
    }
  });

  describe('iterate', () => {
    it('yields notifications and unsubscribes on break', async () => {
      const { listener } = makeListener();
      await listener.start();
      const it = listener.iterate('stream');
      await listener.ready();
      const seen: Notification[] = [];
      const sender = (async () => {
        for (let i = 0; i < 3; i++) await db.pool.query(`NOTIFY stream, 'm${i}'`);
      })();
      for await (const n of it) {
        seen.push(n);
        if (seen.length === 3) break;
      }
      await sender;
      expect(seen.map((n) => n.payload)).toEqual(['m0', 'm1', 'm2']);
      expect(listener.channelNames).toEqual([]);
    });

    it('drop-oldest keeps the newest bufferSize notifications', async () => {
      const { listener } = makeListener();
      const it = listener.iterate('overfull', { bufferSize: 3 });
      let dropped = 0;
      listener.on('overflow', (o) => (dropped += o.dropped));
      await listener.start();
      await db.pool.query(
        Array.from({ length: 10 }, (_, i) => `NOTIFY overfull, '${i}'`).join('; '),
      );
      await waitFor(() => dropped === 7);
      const out: string[] = [];
      for (let i = 0; i < 3; i++) out.push((await it.next()).value.payload);
      expect(out).toEqual(['7', '8', '9']);
      await it.return!();
    });

    it('drop-newest keeps the first bufferSize notifications', async () => {
      const { listener } = makeListener();
      const it = listener.iterate('full2', { bufferSize: 3, overflow: 'drop-newest' });
      let dropped = 0;
      listener.on('overflow', (o) => (dropped += o.dropped));
      await listener.start();
      await db.pool.query(Array.from({ length: 10 }, (_, i) => `NOTIFY full2, '${i}'`).join('; '));
      await waitFor(() => dropped === 7);
      const out: string[] = [];
      for (let i = 0; i < 3; i++) out.push((await it.next()).value.payload);
      expect(out).toEqual(['0', '1', '2']);
      await it.return!();
    });

    it("'error' yields what is buffered, then throws ClosedError and unsubscribes", async () => {
      const { listener } = makeListener();
      const it = listener.iterate('full3', { bufferSize: 2, overflow: 'error' });
      await listener.start();
      await db.pool.query(`NOTIFY full3, 'a'; NOTIFY full3, 'b'; NOTIFY full3, 'c'`);
      await waitFor(() => listener.channelNames.length === 0);
      expect((await it.next()).value.payload).toBe('a');
      expect((await it.next()).value.payload).toBe('b');
      await expect(it.next()).rejects.toBeInstanceOf(ClosedError);
      expect((await it.next()).done).toBe(true);
    });

    it('ends when the listener stops', async () => {
      const { listener } = makeListener();
      const it = listener.iterate('ending');
      await listener.start();
      const pending = it.next();
      await listener.stop();
      expect((await pending).done).toBe(true);
    });
  });
});
