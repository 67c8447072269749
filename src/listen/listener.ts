import { EventEmitter } from 'node:events';
import type pg from 'pg';
import {
  ClosedError,
  coerceError,
  NotFoundError,
  ValidationError,
  type PgcoordError,
} from '../core/index.js';
import { quoteIdent } from '../core/index.js';
import { checkOptions, checkText, optionalInt } from '../core/index.js';
import {
  resolveListenerOptions,
  type HandleOptions,
  type ListenerEvents,
  type ListenerLogger,
  type ListenerOptions,
  type NotificationHandler,
} from './listener-options.js';
import { Dialer, ListenerConnection, type Notification } from './listener-connection.js';
import { LARGE_PAYLOAD_PREFIX, MAX_CHANNEL_BYTES } from './notify.js';
import { Fifo, NotificationIterator, type IterateOptions } from './notification-iterator.js';
import { transactionPoolerProblem } from './transaction-pooler.js';

export type { Notification } from './listener-connection.js';
export type { IterateOptions, OverflowPolicy } from './notification-iterator.js';
export type {
  HandleOptions,
  ListenerEvents,
  ListenerLogger,
  ListenerOptions,
  NotificationHandler,
} from './listener-options.js';

interface Subscription {
  deliver(n: Notification): void;
  /** Called on (re)connect once LISTENed. */
  onListening?(): void;
}

interface HandlerSub extends Subscription {
  handler: NotificationHandler;
  backlog: (() => void | Promise<void>) | undefined;
  concurrency: number;
}

interface ChannelState {
  name: string;
  handler: HandlerSub | undefined;
  iterators: Set<Subscription>;
  /** Jobs waiting to run, in arrival order. */
  queue: Fifo<() => void | Promise<void>>;
  running: number;
  concurrency: number;
}

const CHANNEL_RULE = { maxBytes: MAX_CHANNEL_BYTES };
/** A connection up at least this long (ms) resets the reconnect backoff. */
const STABLE_CONNECTION_MS = 1_000;
/** LISTEN statements sent in one round trip on (re)connect. */
const LISTEN_CHUNK = 500;

/**
 * LISTEN/NOTIFY on one dedicated connection that never gives up: it reconnects forever with
 * jittered exponential backoff, re-LISTENs every channel and runs each channel's backlog hook
 * after every (re)connect, and notices a server that vanished without closing the socket through
 * an idle health query with a timeout (plus TCP keepalive).
 *
 * Delivery is at-least-once when a backlog hook reads what was missed: a handler may see an item
 * twice (once from the backlog, once from its notification). Handler errors are reported through
 * `handler:error` and never stop the listener.
 *
 * @example
 * const listener = new Listener({ connection: process.env.DATABASE_URL });
 * listener.handle('jobs', async (payload) => console.log('job', payload), {
 *   backlog: async () => { await processPendingJobs(); },
 * });
 * await listener.start();
 * // ...
 * await listener.stop();
 */
export class Listener extends EventEmitter<ListenerEvents> {
  private readonly dial: () => Promise<pg.Client>;
  private readonly reconnectDelayMs: number;
  private readonly maxReconnectDelayMs: number;
  private readonly healthCheckIntervalMs: number;
  private readonly healthCheckTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly schema: string;
  private readonly logger: ListenerLogger | undefined;

  private readonly channels = new Map<string, ChannelState>();
  private running = false;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private session: ListenerConnection | undefined;
  private wakeBackoff: (() => void) | undefined;
  private firstListening:
    { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } | undefined;
  private idleWaiters: Array<() => void> = [];
  private connectedOnce = false;
  /** Handlers and backlogs running now, across channels (released ones included). */
  private inFlight = 0;
  private readonly stopHooks = new Set<() => void>();
  private stopped: Promise<void> | undefined;
  /** Aborted when stop() begins: gives up a dial in flight. */
  private stopController = new AbortController();
  /** Cuts off a dial in progress (built-in dialer only; a custom connect() runs its course). */
  private abortDial: () => void = () => undefined;

  constructor(options: ListenerOptions = {}) {
    super();
    const o = resolveListenerOptions(options);
    this.reconnectDelayMs = o.reconnectDelayMs;
    this.maxReconnectDelayMs = o.maxReconnectDelayMs;
    this.healthCheckIntervalMs = o.healthCheckIntervalMs;
    this.healthCheckTimeoutMs = o.healthCheckTimeoutMs;
    this.connectTimeoutMs = o.connectTimeoutMs;
    this.schema = o.schema;
    this.logger = o.logger;
    if (o.connect) {
      this.dial = o.connect;
    } else {
      const dialer = new Dialer(o.clientConfig);
      this.dial = () => dialer.dial();
      this.abortDial = () => dialer.abort();
    }
  }

  /** Whether a connection is up and every channel is LISTENed. */
  get listening(): boolean {
    return this.session !== undefined && !this.session.holding && !this.session.dead;
  }

  /** Channels with a handler or an iterator. */
  get channelNames(): string[] {
    return [...this.channels.keys()];
  }

  /**
   * Sets the handler of `channel` (replacing a previous one), before or after start(). The name
   * is used exactly: case, spaces and quotes are preserved (at most 63 bytes, no NUL).
   */
  handle(channel: string, handler: NotificationHandler, options: HandleOptions = {}): this {
    checkText('channel', channel, CHANNEL_RULE);
    if (typeof handler !== 'function') {
      throw new ValidationError('handler', 'must be a function');
    }
    const o = checkOptions('options', options);
    if (o.backlog !== undefined && typeof o.backlog !== 'function') {
      throw new ValidationError('options.backlog', 'must be a function');
    }
    const concurrency = optionalInt(
      'options.concurrency',
      o.concurrency,
      { min: 1, max: 10_000 },
      1,
    );
    const state = this.channelState(channel);
    const sub: HandlerSub = {
      handler,
      backlog: o.backlog,
      concurrency,
      deliver: (n) => this.enqueue(state, () => this.runHandler(state, sub, n)),
      onListening: () => {
        if (sub.backlog) this.enqueue(state, () => this.runBacklog(state, sub));
      },
    };
    state.handler = sub;
    state.concurrency = concurrency;
    this.subscribed(state, sub);
    return this;
  }

  /**
   * Removes the handler of `channel` and UNLISTENs it (unless an iterator still reads it).
   * A handler already running finishes; notifications queued for it are dropped.
   */
  unhandle(channel: string): this {
    const state = this.channels.get(channel);
    if (!state || !state.handler) return this;
    state.handler = undefined;
    state.queue.clear();
    this.maybeRelease(state);
    return this;
  }

  /**
   * Reads `channel` as an async iterator with a bounded buffer (see {@link IterateOptions} for
   * the overflow policy). Breaking out of the loop unsubscribes. Ends when the listener stops.
   *
   * @example
   * for await (const n of listener.iterate('events', { bufferSize: 100 })) console.log(n.payload);
   */
  iterate(channel: string, options: IterateOptions = {}): AsyncIterableIterator<Notification> {
    checkText('channel', channel, CHANNEL_RULE);
    const o = checkOptions('options', options);
    const bufferSize = optionalInt(
      'options.bufferSize',
      o.bufferSize,
      { min: 1, max: 10_000_000 },
      1000,
    );
    const policy = o.overflow ?? 'drop-oldest';
    if (!['drop-oldest', 'drop-newest', 'error'].includes(policy)) {
      throw new ValidationError(
        'options.overflow',
        `must be 'drop-oldest', 'drop-newest' or 'error', got ${JSON.stringify(policy)}`,
      );
    }
    const state = this.channelState(channel);
    const it: NotificationIterator = new NotificationIterator(channel, bufferSize, policy, {
      onOverflow: () => this.emit('overflow', { channel, dropped: 1, policy }),
      onClose: () => {
        state.iterators.delete(sub);
        this.maybeRelease(state);
        this.stopHooks.delete(onStop);
      },
    });
    const sub: Subscription = { deliver: (n) => it.deliver(n) };
    const onStop = () => it.end();
    state.iterators.add(sub);
    this.stopHooks.add(onStop);
    this.subscribed(state, sub);
    return it;
  }

  /**
   * Starts listening. Resolves once connected with every channel LISTENed; while the database
   * is unreachable it keeps retrying (and the promise waits). Idempotent. Resolves (without
   * connecting) if stop() is called meanwhile.
   */
  async start(): Promise<void> {
    // A start() racing a stop() begins after it, rather than being swallowed by it.
    if (this.stopped) await this.stopped;
    if (!this.running) {
      this.running = true;
      this.stopping = false;
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      this.firstListening = { promise, resolve, reject };
      this.stopController = new AbortController();
      this.loop = this.runLoop();
    }
    await this.firstListening?.promise;
  }

  /**
   * Stops: ends the connection (or a reconnect wait), ends iterators, and waits for running
   * handlers and backlogs to finish. Queued notifications are dropped. Idempotent; fine before
   * start(). The listener can be started again.
   */
  async stop(): Promise<void> {
    if (this.stopped) return this.stopped;
    if (!this.running) return this.drained();
    this.stopped = this.stopNow().finally(() => (this.stopped = undefined));
    return this.stopped;
  }

  private async stopNow(): Promise<void> {
    this.stopping = true;
    this.stopController.abort();
    this.abortDial();
    this.wakeBackoff?.();
    this.session?.end();
    await this.loop;
    for (const state of this.channels.values()) state.queue.clear();
    for (const hook of [...this.stopHooks]) hook();
    await this.drained();
    this.firstListening?.resolve();
    this.firstListening = undefined;
    this.running = false;
    this.loop = undefined;
  }

  /**
   * Resolves once every channel subscribed so far is LISTENed on the current connection (handle()
   * and iterate() after start() LISTEN in the background). Waits through reconnects; resolves at
   * once when the listener is not started, and when it stops.
   */
  async ready(): Promise<void> {
    while (this.running && !this.stopping) {
      const s = this.session;
      if (s && !s.dead && !s.holding) {
        // Statements run in order on the connection: once this answers, earlier LISTENs have.
        const ok = await s.command('SELECT 1').then(
          () => true,
          () => false,
        );
        if (ok && !s.dead) return;
      } else {
        await new Promise<void>((resolve) => {
          const done = () => {
            this.off('connect', done);
            this.stopHooks.delete(done);
            resolve();
          };
          this.once('connect', done);
          this.stopHooks.add(done);
        });
      }
    }
  }

  // ---- channel bookkeeping ----

  private channelState(channel: string): ChannelState {
    let state = this.channels.get(channel);
    if (!state) {
      state = {
        name: channel,
        handler: undefined,
        iterators: new Set(),
        queue: new Fifo(),
        running: 0,
        concurrency: 1,
      };
      this.channels.set(channel, state);
    }
    return state;
  }

  /** A new subscriber: LISTEN now if connected and not yet listening. */
  private subscribed(state: ChannelState, sub: Subscription): void {
    const s = this.session;
    // Not connected, or the (re)connect is LISTENing right now: listenAll() picks it up.
    if (!s || s.dead || s.holding) return;
    if (s.listened.has(state.name)) {
      sub.onListening?.();
      return;
    }
    s.listened.add(state.name);
    s.command(`LISTEN ${quoteIdent(state.name)}`)
      .then(() => {
        if (!s.dead) sub.onListening?.();
      })
      .catch((err: unknown) => s.fail(coerceError(err)));
  }

  /** No subscriber left: forget the channel and UNLISTEN. */
  private maybeRelease(state: ChannelState): void {
    if (state.handler || state.iterators.size > 0) return;
    if (this.channels.get(state.name) === state) this.channels.delete(state.name);
    const s = this.session;
    if (!s || s.dead || !s.listened.has(state.name)) return;
    // Forget it first: a new subscriber's LISTEN is then queued after this UNLISTEN.
    s.listened.delete(state.name);
    s.command(`UNLISTEN ${quoteIdent(state.name)}`).catch((err: unknown) =>
      s.fail(coerceError(err)),
    );
  }

  // ---- delivery ----

  private dispatch(n: Notification): void {
    const state = this.channels.get(n.channel);
    if (!state) return;
    if (!n.payload.startsWith(LARGE_PAYLOAD_PREFIX)) {
      state.handler?.deliver(n);
      for (const it of state.iterators) it.deliver(n);
      return;
    }
    // A stored large payload: fetch it once, in order with the channel's other work.
    const id = n.payload.slice(LARGE_PAYLOAD_PREFIX.length);
    const resolved = this.fetchLargePayload(id);
    resolved.catch((error: unknown) => this.reportHandlerError(state.name, error, n, 'handler'));
    const sub = state.handler;
    if (sub) {
      this.enqueue(state, async () => {
        const payload = await resolved.catch(() => undefined);
        if (payload !== undefined) await this.runHandler(state, sub, { ...n, payload });
      });
    }
    for (const it of state.iterators) {
      void resolved.then(
        (payload) => it.deliver({ ...n, payload }),
        () => undefined,
      );
    }
  }

  private async fetchLargePayload(id: string): Promise<string> {
    const s = this.session;
    if (!s || s.dead) throw new ClosedError('the listener connection is down');
    const res = await s.command(
      `SELECT payload FROM ${quoteIdent(this.schema)}.listener_payloads WHERE id = $1::uuid`,
      [id],
    );
    const row = res.rows[0] as { payload: string } | undefined;
    if (!row)
      throw new NotFoundError(`stored payload ${id} is gone (cleaned up before it was read)`);
    return row.payload;
  }

  /** Queues work for a channel and runs what its concurrency allows. */
  private enqueue(state: ChannelState, job: () => void | Promise<void>): void {
    state.queue.push(job);
    this.pump(state);
  }

  private pump(state: ChannelState): void {
    while (state.running < state.concurrency && state.queue.length > 0) {
      const job = state.queue.shift()!;
      const pending = job();
      // A synchronous handler costs no promise: the hot path at thousands per second.
      if (pending === undefined) continue;
      state.running++;
      this.inFlight++;
      void pending.finally(() => {
        state.running--;
        this.inFlight--;
        this.pump(state);
        this.checkIdle();
      });
    }
  }

  private runHandler(state: ChannelState, sub: HandlerSub, n: Notification): void | Promise<void> {
    // Unhandled (or replaced) after it was queued: drop it.
    if (state.handler !== sub) return;
    let result: void | Promise<void>;
    try {
      result = sub.handler(n.payload, n);
    } catch (error) {
      this.reportHandlerError(state.name, error, n, 'handler');
      return;
    }
    if (result && typeof (result as Promise<void>).then === 'function') {
      return Promise.resolve(result).then(undefined, (error: unknown) =>
        this.reportHandlerError(state.name, error, n, 'handler'),
      );
    }
  }

  private async runBacklog(state: ChannelState, sub: HandlerSub): Promise<void> {
    if (state.handler !== sub || !sub.backlog) return;
    try {
      await sub.backlog();
    } catch (error) {
      this.reportHandlerError(state.name, error, undefined, 'backlog');
    }
  }

  private reportHandlerError(
    channel: string,
    error: unknown,
    notification: Notification | undefined,
    kind: 'handler' | 'backlog',
  ): void {
    this.logger?.warn?.({ channel, kind, err: error }, 'pgcoord listener: handler failed');
    if (this.listenerCount('handler:error') > 0) {
      this.emit('handler:error', { channel, error, notification, kind });
    }
  }

  private drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private checkIdle(): void {
    if (this.inFlight > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  // ---- connection ----

  private async runLoop(): Promise<void> {
    // Reconnect attempts since the last stable connection. The first one is immediate (a killed
    // backend or a dropped socket usually means the server is there); later ones back off.
    let attempt = 0;
    let firstDial = true;
    let lastError: PgcoordError | undefined;
    while (!this.stopping) {
      if (!firstDial) {
        attempt++;
        const delayMs = attempt === 1 ? 0 : this.backoffMs(attempt - 1);
        this.logger?.debug?.({ attempt, delayMs }, 'pgcoord listener: reconnecting');
        this.emit('reconnect', { attempt, delayMs, error: lastError });
        if (delayMs > 0) await this.sleep(delayMs);
        if (this.stopping) break;
      }
      firstDial = false;
      let session: ListenerConnection;
      try {
        session = await ListenerConnection.open(
          this.dial,
          this.connectTimeoutMs,
          this.stopController.signal,
          {
            commandTimeoutMs: this.healthCheckTimeoutMs,
            healthCheckIntervalMs: this.healthCheckIntervalMs,
            onNotification: (n) => this.dispatch(n),
            onFailure: (err) => {
              if (!this.stopping) this.reportError(err);
            },
          },
        );
        this.session = session;
      } catch (err) {
        lastError = coerceError(err);
        this.reportError(lastError);
        continue;
      }
      if (this.stopping) {
        await this.closeSession(session);
        break;
      }
      // Before the first LISTEN only: the check may open a second connection, which a
      // reconnect storm should not double.
      if (!this.connectedOnce) {
        const refused = await transactionPoolerProblem(session, {
          dial: this.dial,
          connectTimeoutMs: this.connectTimeoutMs,
          commandTimeoutMs: this.healthCheckTimeoutMs,
          signal: this.stopController.signal,
        });
        if (refused) {
          this.logger?.error?.({ err: refused }, 'pgcoord listener: cannot listen here');
          await this.closeSession(session);
          this.firstListening?.reject(refused);
          void this.stop();
          break;
        }
      }

      try {
        await this.listenAll(session);
      } catch (err) {
        // A connection error already failed (and reported) the session; a refused LISTEN did not.
        if (!session.dead) session.fail(coerceError(err));
      }
      let upAt: number | undefined;
      if (!session.dead) {
        upAt = Date.now();
        const reconnected = this.connectedOnce;
        this.connectedOnce = true;
        const processId = session.processId;
        this.logger?.info?.(
          { reconnected, processId, channels: this.channels.size },
          'pgcoord listener: listening',
        );
        this.emit('connect', { reconnected, processId });
        this.firstListening?.resolve();
      }
      await session.ended;
      lastError = session.error;
      await this.closeSession(session);
      if (upAt === undefined) continue;
      this.emit('disconnect', { error: session.error });
      if (session.error) {
        this.logger?.warn?.({ err: session.error }, 'pgcoord listener: connection lost');
      }
      // Flap guard: only a connection that stayed up resets the backoff.
      if (Date.now() - upAt >= STABLE_CONNECTION_MS) attempt = 0;
    }
  }

  /** Delay before the n-th backed-off retry: exponential, capped, with "equal jitter". */
  private backoffMs(n: number): number {
    const cap = Math.min(
      this.maxReconnectDelayMs,
      this.reconnectDelayMs * 2 ** Math.min(n - 1, 30),
    );
    // Half fixed, half random: peers spread out, yet nobody retries at once.
    return Math.round(cap / 2 + Math.random() * (cap / 2));
  }

  private reportError(err: PgcoordError): void {
    this.logger?.warn?.({ err }, 'pgcoord listener: connection error');
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeBackoff = () => {
        this.wakeBackoff = undefined;
        done();
      };
    });
  }

  /** LISTENs every channel in few round trips, then queues backlogs, then releases held notifications. */
  private async listenAll(session: ListenerConnection): Promise<void> {
    // Loop: channels added while a batch was on the wire get their own next batch.
    for (;;) {
      const todo = [...this.channels.keys()].filter((c) => !session.listened.has(c));
      if (todo.length === 0) break;
      for (let i = 0; i < todo.length; i += LISTEN_CHUNK) {
        const chunk = todo.slice(i, i + LISTEN_CHUNK);
        for (const c of chunk) session.listened.add(c);
        await session.command(chunk.map((c) => `LISTEN ${quoteIdent(c)}`).join('; '));
      }
    }
    if (session.dead) return;
    // Backlogs go first into each channel's queue, then what arrived while LISTENing.
    for (const state of this.channels.values()) {
      state.handler?.onListening?.();
      for (const it of state.iterators) it.onListening?.();
    }
    session.release();
  }

  private async closeSession(session: ListenerConnection): Promise<void> {
    if (this.session === session) this.session = undefined;
    await session.close();
  }
}
