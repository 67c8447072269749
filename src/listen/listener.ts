import { EventEmitter } from 'node:events';
import type pg from 'pg';
import {
  backoffDelayMs,
  ClosedError,
  coerceError,
  Lifecycle,
  NotFoundError,
  reportError,
  sleep,
  ValidationError,
  type LifecycleSignals,
  type Logger,
  type PgcoordError,
  type Service,
} from '../core/index.js';
import { quoteIdent } from '../core/index.js';
import { checkOptions, checkText, optionalInt } from '../core/index.js';
import {
  resolveListenerOptions,
  type HandleOptions,
  type ListenerEvents,
  type ListenerOptions,
  type NotificationHandler,
} from './listener-options.js';
import { Dialer, ListenerConnection, type Notification } from './listener-connection.js';
import { LARGE_PAYLOAD_PREFIX, MAX_CHANNEL_BYTES } from './notify.js';
import { NotificationIterator, type IterateOptions } from './notification-iterator.js';
import {
  Delivery,
  newChannelState,
  type ChannelState,
  type HandlerSub,
  type Subscription,
} from './listener-delivery.js';
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
export class Listener extends EventEmitter<ListenerEvents> implements Service {
  private readonly dial: () => Promise<pg.Client>;
  private readonly reconnectDelayMs: number;
  private readonly maxReconnectDelayMs: number;
  private readonly healthCheckIntervalMs: number;
  private readonly healthCheckTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly schema: string;
  private readonly logger: Logger;

  private readonly channels = new Map<string, ChannelState>();
  private readonly delivery = new Delivery((channel, error, notification, kind) =>
    this.reportHandlerError(channel, error, notification, kind),
  );
  private readonly lifecycle = new Lifecycle(
    { name: 'pgcoord listener' },
    { start: (signal) => this.startLoop(signal), stop: () => this.stopLoop() },
  );
  /** Test signals: `started` (first connection of a start() LISTENs), `stopped`. */
  readonly signals: LifecycleSignals = this.lifecycle.signals;
  /** Set when stop() begins (the lifecycle's signal aborts): the loop ends. */
  private stopping = false;
  private loop: Promise<void> | undefined;
  private session: ListenerConnection | undefined;
  private firstListening:
    { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } | undefined;
  private connectedOnce = false;
  private readonly stopHooks = new Set<() => void>();
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
      deliver: (n) => this.delivery.enqueue(state, () => this.delivery.runHandler(state, sub, n)),
      onListening: () => {
        if (sub.backlog) {
          this.delivery.enqueue(state, () => this.delivery.runBacklog(state, sub));
        }
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
   * connecting) if stop() is called meanwhile. Rejects (and stays stopped) when the server is
   * behind a transaction pooler, where LISTEN cannot work.
   */
  start(): Promise<void> {
    return this.lifecycle.start();
  }

  /**
   * Stops: ends the connection (or a reconnect wait), ends iterators, and waits for running
   * handlers and backlogs to finish. Queued notifications are dropped. Idempotent; fine before
   * start(). The listener can be started again.
   */
  async stop(): Promise<void> {
    await this.lifecycle.stop();
    // Handlers still running from a start that failed.
    await this.delivery.drained();
  }

  /** Same as {@link stop}: `await using listener = ...` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** The lifecycle's start hook: runs the connection loop until the first connection listens. */
  private async startLoop(signal: AbortSignal): Promise<void> {
    this.stopping = false;
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    this.firstListening = { promise, resolve, reject };
    signal.addEventListener('abort', () => this.interrupt(), { once: true });
    this.loop = this.runLoop(signal);
    try {
      await promise;
    } catch (err) {
      // Refused: leave nothing running, as the lifecycle requires of a failed start.
      this.interrupt();
      await this.stopLoop();
      throw err;
    }
  }

  /** Stop began: wake the loop out of a dial, a backoff wait or a connection. */
  private interrupt(): void {
    this.stopping = true;
    this.abortDial();
    this.session?.end();
    this.firstListening?.resolve();
  }

  /** The lifecycle's stop hook: waits for the loop, ends iterators and running handlers. */
  private async stopLoop(): Promise<void> {
    await this.loop;
    for (const state of this.channels.values()) state.queue.clear();
    for (const hook of [...this.stopHooks]) hook();
    await this.delivery.drained();
    this.firstListening = undefined;
    this.loop = undefined;
  }

  /**
   * Resolves once every channel subscribed so far is LISTENed on the current connection (handle()
   * and iterate() after start() LISTEN in the background). Waits through reconnects; resolves at
   * once when the listener is not started, and when it stops.
   */
  async ready(): Promise<void> {
    while (this.lifecycle.active && !this.stopping) {
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
      state = newChannelState(channel);
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
      this.delivery.enqueue(state, async () => {
        const payload = await resolved.catch(() => undefined);
        if (payload !== undefined) await this.delivery.runHandler(state, sub, { ...n, payload });
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

  private reportHandlerError(
    channel: string,
    error: unknown,
    notification: Notification | undefined,
    kind: 'handler' | 'backlog',
  ): void {
    this.logger.warn({ channel, kind, err: error }, 'pgcoord listener: handler failed');
    if (this.listenerCount('handler:error') > 0) {
      this.emit('handler:error', { channel, error, notification, kind });
    }
  }

  // ---- connection ----

  private async runLoop(signal: AbortSignal): Promise<void> {
    // Reconnect attempts since the last stable connection. The first one is immediate (a killed
    // backend or a dropped socket usually means the server is there); later ones back off.
    let attempt = 0;
    let firstDial = true;
    let lastError: PgcoordError | undefined;
    while (!this.stopping) {
      if (!firstDial) {
        attempt++;
        // Exponential, capped, with "equal jitter": peers spread out, yet nobody retries at once.
        const delayMs =
          attempt === 1
            ? 0
            : backoffDelayMs(attempt - 1, {
                baseMs: this.reconnectDelayMs,
                maxMs: this.maxReconnectDelayMs,
                jitter: 'equal',
              });
        this.logger.debug({ attempt, delayMs }, 'pgcoord listener: reconnecting');
        this.emit('reconnect', { attempt, delayMs, error: lastError });
        if (delayMs > 0) await sleep(delayMs, signal);
        if (this.stopping) break;
      }
      firstDial = false;
      let session: ListenerConnection;
      try {
        session = await ListenerConnection.open(this.dial, this.connectTimeoutMs, signal, {
          commandTimeoutMs: this.healthCheckTimeoutMs,
          healthCheckIntervalMs: this.healthCheckIntervalMs,
          onNotification: (n) => this.dispatch(n),
          onFailure: (err) => {
            if (!this.stopping) this.reportConnectionError(err);
          },
        });
        this.session = session;
      } catch (err) {
        // A dial that stop() cut short is no connection error.
        if (this.stopping) break;
        lastError = coerceError(err);
        this.reportConnectionError(lastError);
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
          signal: signal,
        });
        if (refused) {
          this.logger.error({ err: refused }, 'pgcoord listener: cannot listen here');
          await this.closeSession(session);
          this.firstListening?.reject(refused);
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
        this.logger.info(
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
        this.logger.warn({ err: session.error }, 'pgcoord listener: connection lost');
      }
      // Flap guard: only a connection that stayed up resets the backoff.
      if (Date.now() - upAt >= STABLE_CONNECTION_MS) attempt = 0;
    }
  }

  private reportConnectionError(err: PgcoordError): void {
    reportError(this, this.logger, err, 'pgcoord listener: connection error');
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
