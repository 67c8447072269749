import { EventEmitter } from 'node:events';
import pg from 'pg';
import { resolveConnectionConfig, type ConnectionInput } from './db/connection.js';
import {
  ClosedError,
  coerceError,
  NotFoundError,
  TimeoutError,
  ValidationError,
  type PgcoordError,
} from './db/errors.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent } from './db/identifier.js';
import { checkOptions, checkText, optionalInt } from './validate.js';
import { LARGE_PAYLOAD_PREFIX, MAX_CHANNEL_BYTES } from './notify.js';

/** One notification as a handler or an iterator sees it. */
export interface Notification {
  /** Channel it was sent on, exactly as given to `handle()`. */
  channel: string;
  /** Payload (a stored large payload is already fetched). Empty string when none was sent. */
  payload: string;
  /** Server process id of the sender's backend. */
  processId: number;
}

/** A channel handler. May be async; a throw or rejection is reported as `handler:error`. */
export type NotificationHandler = (
  payload: string,
  notification: Notification,
) => void | Promise<void>;

/** Options of {@link Listener.handle}. */
export interface HandleOptions {
  /**
   * Runs after every (re)connect, once the channel is LISTENed: read what was missed while not
   * listening (e.g. rows of a table newer than the last one handled). Runs in the channel's
   * order with its notifications: a notification that arrives meanwhile is handled after it.
   */
  backlog?: () => void | Promise<void>;
  /**
   * Handlers of this channel allowed to run at the same time. Default 1: one at a time, in the
   * order the notifications arrived. Above 1, order is not guaranteed.
   */
  concurrency?: number;
}

/** What to do when an iterator's buffer is full and another notification arrives. */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'error';

/** Options of {@link Listener.iterate}. */
export interface IterateOptions {
  /** Notifications buffered while the consumer is busy. Default 1000. */
  bufferSize?: number;
  /**
   * Policy when the buffer is full. Default `'drop-oldest'` (keep the freshest). `'drop-newest'`
   * discards the arriving one; `'error'` ends the iterator: it yields what is buffered and then
   * throws a `ClosedError`. Every drop emits an `overflow` event.
   */
  overflow?: OverflowPolicy;
}

/** Logger hook: pino, console, or anything with these methods. */
export interface ListenerLogger {
  debug?(obj: object, msg?: string): void;
  info?(obj: object, msg?: string): void;
  warn?(obj: object, msg?: string): void;
  error?(obj: object, msg?: string): void;
}

/** Options of {@link Listener}. */
export interface ListenerOptions {
  /**
   * Where to connect (string or pg config, resolved with explicit defaults). Ignored when
   * `connect` is given. Default: `DATABASE_URL`, then the `PG*` variables, then 127.0.0.1:5432.
   */
  connection?: ConnectionInput;
  /**
   * Dials a new dedicated connection; called on every (re)connect and must return a fresh,
   * connected client each time (never a pooled one). The listener ends it when done.
   */
  connect?: () => Promise<pg.Client>;
  /**
   * Reconnect delay in ms after the first retry (which is immediate); doubles per failed attempt,
   * with jitter, up to `maxReconnectDelayMs`. Default 100.
   */
  reconnectDelayMs?: number;
  /** Cap of the reconnect delay in ms. Default 5000. */
  maxReconnectDelayMs?: number;
  /**
   * Health query (`SELECT 1`) runs when the connection was silent this long, in ms. With
   * `healthCheckTimeoutMs` it bounds how long a vanished server goes unnoticed. Default 2000.
   */
  healthCheckIntervalMs?: number;
  /** A health query (or LISTEN, or fetch) not answered within this many ms kills the connection. Default 3000. */
  healthCheckTimeoutMs?: number;
  /** Timeout of dialing one connection, in ms. Default 5000. */
  connectTimeoutMs?: number;
  /** TCP keepalive initial delay in ms for connections this listener dials. Default 1000. */
  keepAliveInitialDelayMs?: number;
  /** `application_name` of connections this listener dials. Default `pgcoord-listener`. */
  applicationName?: string;
  /** Schema holding stored large payloads (see `notify`). Default `pgcoord`. */
  schema?: string;
  /** Logger hook. Default: none. */
  logger?: ListenerLogger;
}

/** Events of a {@link Listener}. */
export interface ListenerEvents {
  /** Connected and every channel LISTENed (backlogs are queued). `reconnected` is false the first time. */
  connect: [info: { reconnected: boolean; processId: number | undefined }];
  /** The connection was lost (or closed by stop()). */
  disconnect: [info: { error: PgcoordError | undefined }];
  /**
   * A reconnect attempt is about to be made after `delayMs`. `attempt` counts from 1 since the
   * last connection that stayed up 1 s; the first is immediate (`delayMs` 0).
   */
  reconnect: [info: { attempt: number; delayMs: number; error: PgcoordError | undefined }];
  /** A connection-level error (dial, LISTEN, health check). Never fatal. */
  error: [error: PgcoordError];
  /** A handler or backlog threw. Never fatal. */
  'handler:error': [
    info: {
      channel: string;
      error: unknown;
      notification: Notification | undefined;
      kind: 'handler' | 'backlog';
    },
  ];
  /** An iterator's buffer was full; `dropped` notifications were discarded. */
  overflow: [info: { channel: string; dropped: number; policy: OverflowPolicy }];
}

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
  queue: Array<() => Promise<void>>;
  running: number;
  concurrency: number;
}

interface Session {
  client: pg.Client;
  dead: boolean;
  error: PgcoordError | undefined;
  /** Resolves when the session must end (connection lost or stop()). */
  ended: Promise<void>;
  end: (err?: PgcoordError) => void;
  lastActivity: number;
  /** Notifications received before the channel LISTENs and backlogs were queued. */
  held: Notification[] | undefined;
  /** Channels LISTENed (or being LISTENed) on this connection. */
  listened: Set<string>;
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
  private session: Session | undefined;
  private wakeBackoff: (() => void) | undefined;
  private firstListening: { promise: Promise<void>; resolve: () => void } | undefined;
  private idleWaiters: Array<() => void> = [];
  private connectedOnce = false;
  /** Handlers and backlogs running now, across channels (released ones included). */
  private inFlight = 0;
  private readonly stopHooks = new Set<() => void>();
  private stopped: Promise<void> | undefined;
  /** Resolves when stop() begins: aborts a dial or a statement in flight. */
  private stopSignal: Promise<void> = Promise.resolve();
  private signalStop: (() => void) | undefined;

  constructor(options: ListenerOptions = {}) {
    super();
    const o = checkOptions('options', options);
    const int = (name: keyof ListenerOptions, min: number, max: number, fallback: number) =>
      optionalInt(`options.${name}`, o[name], { min, max }, fallback);
    this.reconnectDelayMs = int('reconnectDelayMs', 0, 3_600_000, 100);
    this.maxReconnectDelayMs = int('maxReconnectDelayMs', 0, 3_600_000, 5_000);
    if (this.maxReconnectDelayMs < this.reconnectDelayMs) {
      throw new ValidationError(
        'options.maxReconnectDelayMs',
        `must be at least reconnectDelayMs (${this.reconnectDelayMs})`,
      );
    }
    this.healthCheckIntervalMs = int('healthCheckIntervalMs', 10, 3_600_000, 2_000);
    this.healthCheckTimeoutMs = int('healthCheckTimeoutMs', 10, 3_600_000, 3_000);
    this.connectTimeoutMs = int('connectTimeoutMs', 10, 3_600_000, 5_000);
    const keepAliveMs = int('keepAliveInitialDelayMs', 0, 3_600_000, 1_000);
    this.schema = checkSchemaName(o.schema ?? DEFAULT_SCHEMA);
    this.logger = o.logger;
    if (o.connect !== undefined) {
      if (typeof o.connect !== 'function') {
        throw new ValidationError('options.connect', 'must be a function returning a pg.Client');
      }
      this.dial = o.connect;
    } else {
      const applicationName =
        o.applicationName === undefined
          ? undefined
          : checkText('options.applicationName', o.applicationName, { maxBytes: 63 });
      const base = resolveConnectionConfig(o.connection);
      const config: pg.ClientConfig = {
        ...base,
        keepAlive: true,
        keepAliveInitialDelayMillis: keepAliveMs,
        connectionTimeoutMillis: this.connectTimeoutMs,
        application_name: applicationName ?? base.application_name ?? 'pgcoord-listener',
      };
      this.dial = async () => {
        const client = new pg.Client(config);
        try {
          await client.connect();
        } catch (err) {
          client.on('error', () => undefined);
          await client.end().catch(() => undefined);
          throw err;
        }
        return client;
      };
    }
  }

  /** Whether a connection is up and every channel is LISTENed. */
  get listening(): boolean {
    return this.session !== undefined && this.session.held === undefined && !this.session.dead;
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
    state.queue.length = 0;
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
    const buffer: Notification[] = [];
    let waiter: ((r: IteratorResult<Notification>) => void) | undefined;
    let failer: ((err: unknown) => void) | undefined;
    let done = false;
    let failure: ClosedError | undefined;

    const finish = () => {
      if (done) return;
      done = true;
      state.iterators.delete(sub);
      this.maybeRelease(state);
      this.stopHooks.delete(finishOnStop);
    };
    const finishOnStop = () => {
      finish();
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        failer = undefined;
        w({ value: undefined, done: true });
      }
    };
    const sub: Subscription = {
      deliver: (n) => {
        if (done) return;
        if (waiter) {
          const w = waiter;
          waiter = undefined;
          failer = undefined;
          w({ value: n, done: false });
          return;
        }
        if (buffer.length < bufferSize) {
          buffer.push(n);
          return;
        }
        this.emit('overflow', { channel, dropped: 1, policy });
        if (policy === 'drop-oldest') {
          buffer.shift();
          buffer.push(n);
        } else if (policy === 'error') {
          failure = new ClosedError(
            `iterate(${JSON.stringify(channel)}): the buffer of ${bufferSize} notifications overflowed (the consumer is too slow)`,
          );
          finish();
        }
      },
    };
    state.iterators.add(sub);
    this.stopHooks.add(finishOnStop);
    this.subscribed(state, sub);

    const iterator: AsyncIterableIterator<Notification> = {
      next: () => {
        const n = buffer.shift();
        if (n) return Promise.resolve({ value: n, done: false });
        if (failure) {
          const f = failure;
          failure = undefined;
          return Promise.reject(f);
        }
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<Notification>>((resolve, reject) => {
          waiter = resolve;
          failer = reject;
        });
      },
      return: () => {
        finish();
        buffer.length = 0;
        if (waiter) {
          waiter({ value: undefined, done: true });
          waiter = undefined;
        }
        void failer;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
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
      const promise = new Promise<void>((r) => (resolve = r));
      this.firstListening = { promise, resolve };
      let signal!: () => void;
      this.stopSignal = new Promise<void>((r) => (signal = r));
      this.signalStop = signal;
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
    this.signalStop?.();
    this.wakeBackoff?.();
    this.session?.end();
    await this.loop;
    for (const state of this.channels.values()) state.queue.length = 0;
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
      if (s && !s.dead && s.held === undefined) {
        // Statements run in order on the connection: once this answers, earlier LISTENs have.
        const ok = await this.command(s, 'SELECT 1').then(
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
        queue: [],
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
    if (!s || s.dead || s.held !== undefined) return;
    if (s.listened.has(state.name)) {
      sub.onListening?.();
      return;
    }
    s.listened.add(state.name);
    this.command(s, `LISTEN ${quoteIdent(state.name)}`)
      .then(() => {
        if (!s.dead) sub.onListening?.();
      })
      .catch((err: unknown) => this.killSession(s, coerceError(err)));
  }

  /** No subscriber left: forget the channel and UNLISTEN. */
  private maybeRelease(state: ChannelState): void {
    if (state.handler || state.iterators.size > 0) return;
    if (this.channels.get(state.name) === state) this.channels.delete(state.name);
    const s = this.session;
    if (!s || s.dead || !s.listened.has(state.name)) return;
    // Forget it first: a new subscriber's LISTEN is then queued after this UNLISTEN.
    s.listened.delete(state.name);
    this.command(s, `UNLISTEN ${quoteIdent(state.name)}`).catch((err: unknown) =>
      this.killSession(s, coerceError(err)),
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
    const res = await this.command(
      s,
      `SELECT payload FROM ${quoteIdent(this.schema)}.listener_payloads WHERE id = $1::uuid`,
      [id],
    );
    const row = res.rows[0] as { payload: string } | undefined;
    if (!row)
      throw new NotFoundError(`stored payload ${id} is gone (cleaned up before it was read)`);
    return row.payload;
  }

  /** Queues work for a channel and runs what its concurrency allows. */
  private enqueue(state: ChannelState, job: () => Promise<void>): void {
    state.queue.push(job);
    this.pump(state);
  }

  private pump(state: ChannelState): void {
    while (state.running < state.concurrency && state.queue.length > 0) {
      const job = state.queue.shift()!;
      state.running++;
      this.inFlight++;
      void job().finally(() => {
        state.running--;
        this.inFlight--;
        this.pump(state);
        this.checkIdle();
      });
    }
  }

  private async runHandler(state: ChannelState, sub: HandlerSub, n: Notification): Promise<void> {
    // Unhandled (or replaced) after it was queued: drop it.
    if (state.handler !== sub) return;
    try {
      await sub.handler(n.payload, n);
    } catch (error) {
      this.reportHandlerError(state.name, error, n, 'handler');
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
        this.emit('reconnect', { attempt, delayMs, error: lastError });
        if (delayMs > 0) await this.sleep(delayMs);
        if (this.stopping) break;
      }
      firstDial = false;
      let session: Session;
      try {
        session = await this.openSession();
      } catch (err) {
        lastError = coerceError(err);
        this.reportError(lastError);
        continue;
      }
      if (this.stopping) {
        await this.closeSession(session);
        break;
      }
      try {
        await this.listenAll(session);
      } catch (err) {
        lastError = coerceError(err);
        this.reportError(lastError);
        session.end(lastError);
      }
      let upAt: number | undefined;
      if (!session.dead) {
        upAt = Date.now();
        const reconnected = this.connectedOnce;
        this.connectedOnce = true;
        this.emit('connect', {
          reconnected,
          processId: (session.client as { processID?: number }).processID,
        });
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

  private async openSession(): Promise<Session> {
    const client = await withTimeout(
      this.dial(),
      this.connectTimeoutMs,
      (late) => {
        // The dial finished after we gave up on it (timeout or stop): close what it made.
        late.on('error', () => undefined);
        void late.end().catch(() => undefined);
      },
      this.stopSignal,
    );
    let endFn!: (err?: PgcoordError) => void;
    const ended = new Promise<void>((resolve) => (endFn = () => resolve()));
    const session: Session = {
      client,
      dead: false,
      error: undefined,
      ended,
      end: (err) => {
        if (session.dead) return;
        session.dead = true;
        session.error = err;
        endFn();
      },
      lastActivity: Date.now(),
      held: [],
      listened: new Set(),
    };
    client.on('error', (err) => this.killSession(session, coerceError(err)));
    client.on('end', () =>
      this.killSession(session, new ClosedError('the listener connection was closed')),
    );
    client.on('notification', (msg) => {
      session.lastActivity = Date.now();
      const n: Notification = {
        channel: msg.channel,
        payload: msg.payload ?? '',
        processId: msg.processId,
      };
      if (session.held) session.held.push(n);
      else this.dispatch(n);
    });
    this.session = session;
    this.scheduleHealthCheck(session);
    return session;
  }

  /** LISTENs every channel in few round trips, then queues backlogs, then releases held notifications. */
  private async listenAll(session: Session): Promise<void> {
    // Loop: channels added while a batch was on the wire get their own next batch.
    for (;;) {
      const todo = [...this.channels.keys()].filter((c) => !session.listened.has(c));
      if (todo.length === 0) break;
      for (let i = 0; i < todo.length; i += LISTEN_CHUNK) {
        const chunk = todo.slice(i, i + LISTEN_CHUNK);
        for (const c of chunk) session.listened.add(c);
        await this.command(session, chunk.map((c) => `LISTEN ${quoteIdent(c)}`).join('; '));
      }
    }
    if (session.dead) return;
    const held = session.held ?? [];
    session.held = undefined;
    for (const state of this.channels.values()) {
      state.handler?.onListening?.();
      for (const it of state.iterators) it.onListening?.();
    }
    for (const n of held) this.dispatch(n);
  }

  /** Runs a statement on the session with the health timeout; a timeout kills the session. */
  private async command(
    session: Session,
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult> {
    if (session.dead) throw new ClosedError('the listener connection is down');
    try {
      const res = await withTimeout(
        session.client.query(text, values),
        this.healthCheckTimeoutMs,
        () => undefined,
        session.ended,
      );
      session.lastActivity = Date.now();
      return res;
    } catch (err) {
      const e = coerceError(err);
      if (e.code === 'PGCOORD_TIMEOUT' || e.code === 'PGCOORD_CONNECTION')
        this.killSession(session, e);
      throw e;
    }
  }

  private scheduleHealthCheck(session: Session): void {
    const tick = () => {
      if (session.dead) return;
      const idleMs = Date.now() - session.lastActivity;
      if (idleMs < this.healthCheckIntervalMs) {
        timer = setTimeout(tick, this.healthCheckIntervalMs - idleMs);
        timer.unref();
        return;
      }
      this.command(session, 'SELECT 1').then(
        () => {
          if (session.dead) return;
          timer = setTimeout(tick, this.healthCheckIntervalMs);
          timer.unref();
        },
        () => undefined, // command() already killed the session
      );
    };
    let timer = setTimeout(tick, this.healthCheckIntervalMs);
    timer.unref();
    void session.ended.then(() => clearTimeout(timer));
  }

  private killSession(session: Session, err: PgcoordError): void {
    if (session.dead) return;
    if (!this.stopping) this.reportError(err);
    session.end(err);
  }

  private async closeSession(session: Session): Promise<void> {
    session.end();
    if (this.session === session) this.session = undefined;
    const client = session.client;
    client.removeAllListeners('notification');
    client.on('error', () => undefined);
    if (session.error) {
      // The socket may be wedged (server gone silent): destroy it rather than wait for a goodbye.
      client.connection.stream.destroy();
      await client.end().catch(() => undefined);
      return;
    }
    await withTimeout(client.end(), this.healthCheckTimeoutMs, () => undefined).catch(() => {
      client.connection.stream.destroy();
    });
  }
}

/**
 * Resolves like `p`, or rejects with a TimeoutError after `ms`, or with a ClosedError when
 * `abort` resolves first; `onLate` receives a success that came after we gave up.
 */
function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  onLate: (value: T) => void,
  abort?: Promise<void>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const giveUp = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    };
    const timer = setTimeout(
      () => giveUp(new TimeoutError(`the listener connection gave no answer within ${ms} ms`)),
      ms,
    );
    void abort?.then(() => giveUp(new ClosedError('the listener is stopping')));
    p.then(
      (v) => {
        clearTimeout(timer);
        if (settled) onLate(v);
        else {
          settled = true;
          resolve(v);
        }
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!settled) {
          settled = true;
          reject(err);
        }
      },
    );
  });
}
