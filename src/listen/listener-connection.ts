import pg from 'pg';
import { ClosedError, coerceError, TimeoutError, type PgcoordError } from '../core/index.js';

/** One notification as a handler or an iterator sees it. */
export interface Notification {
  /** Channel it was sent on, exactly as given to `handle()`. */
  channel: string;
  /** Payload (a stored large payload is already fetched). Empty string when none was sent. */
  payload: string;
  /** Server process id of the sender's backend. */
  processId: number;
}

/** How a {@link ListenerConnection} is watched. */
export interface ListenerConnectionOptions {
  /** A statement (health query, LISTEN, payload fetch) unanswered this long (ms) kills the connection. */
  commandTimeoutMs: number;
  /** Silence (ms) after which a health query runs. */
  healthCheckIntervalMs: number;
  /** Receives every notification, once the connection stops holding them. */
  onNotification: (n: Notification) => void;
  /** Called once when the connection dies of an error (not when end() was asked for). */
  onFailure: (err: PgcoordError) => void;
}

/**
 * The Listener's one dedicated connection, with what it takes to notice that it died: any
 * statement on it is bounded by a timeout, and a health query runs whenever it was silent for
 * the health interval, so a server that vanished without closing the socket is caught within
 * interval + timeout. Internal to the Listener.
 */
export class ListenerConnection {
  /** Set once the connection is lost or ended. */
  dead = false;
  /** Why it died (undefined after a requested end). */
  error: PgcoordError | undefined;
  /** Resolves when the connection is lost or ended. */
  readonly ended: Promise<void>;
  /** Channels LISTENed (or being LISTENed) here. */
  readonly listened = new Set<string>();

  private readonly client: pg.Client;
  private readonly options: ListenerConnectionOptions;
  private readonly abort = new AbortController();
  private resolveEnded!: () => void;
  /** Notifications received before release(): channels are still being LISTENed. */
  private held: Notification[] | undefined = [];
  private lastActivity = Date.now();
  private healthTimer: NodeJS.Timeout | undefined;

  private constructor(client: pg.Client, options: ListenerConnectionOptions) {
    this.client = client;
    this.options = options;
    this.ended = new Promise<void>((resolve) => (this.resolveEnded = resolve));
    client.on('error', (err) => this.fail(coerceError(err)));
    client.on('end', () => this.fail(new ClosedError('the listener connection was closed')));
    client.on('notification', (msg) => {
      this.lastActivity = Date.now();
      const n: Notification = {
        channel: msg.channel,
        payload: msg.payload ?? '',
        processId: msg.processId,
      };
      if (this.held) this.held.push(n);
      else this.options.onNotification(n);
    });
    this.scheduleHealthCheck(options.healthCheckIntervalMs);
  }

  /**
   * Dials through `dial` within `connectTimeoutMs`; gives up at once when `signal` aborts (a
   * connection that arrives after we gave up is closed).
   */
  static async open(
    dial: () => Promise<pg.Client>,
    connectTimeoutMs: number,
    signal: AbortSignal,
    options: ListenerConnectionOptions,
  ): Promise<ListenerConnection> {
    const client = await withTimeout(
      dial(),
      connectTimeoutMs,
      (late) => {
        late.on('error', () => undefined);
        void late.end().catch(() => undefined);
      },
      signal,
    );
    return new ListenerConnection(client, options);
  }

  /** Whether notifications are still held back (the channels are being LISTENed). */
  get holding(): boolean {
    return this.held !== undefined;
  }

  /** Server process id of this connection's backend. */
  get processId(): number | undefined {
    return (this.client as { processID?: number }).processID ?? undefined;
  }

  /** Stops holding notifications: hands over the held ones, then each as it arrives. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const n of held) this.options.onNotification(n);
  }

  /** Marks the connection ended (with the error that killed it, if any). Idempotent. */
  end(err?: PgcoordError): void {
    if (this.dead) return;
    this.dead = true;
    this.error = err;
    clearTimeout(this.healthTimer);
    this.abort.abort();
    this.resolveEnded();
  }

  /** The connection died of `err`: reports it once and ends. */
  fail(err: PgcoordError): void {
    if (this.dead) return;
    this.options.onFailure(err);
    this.end(err);
  }

  /**
   * Runs a statement, bounded by the command timeout. A timeout or a connection error kills the
   * connection; ending the connection aborts the wait.
   */
  command(text: string, values?: unknown[]): Promise<pg.QueryResult> {
    // One statement at a time: a health check firing during a LISTEN must wait its turn (pg
    // deprecates queueing on a busy client, and the timeout must time the statement, not the queue).
    const run = this.queue.then(() => this.runCommand(text, values));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private queue: Promise<unknown> = Promise.resolve();

  private async runCommand(text: string, values?: unknown[]): Promise<pg.QueryResult> {
    if (this.dead) throw new ClosedError('the listener connection is down');
    try {
      const res = await withTimeout(
        this.client.query(text, values),
        this.options.commandTimeoutMs,
        () => undefined,
        this.abort.signal,
      );
      this.lastActivity = Date.now();
      return res;
    } catch (err) {
      const e = coerceError(err);
      if (e.code === 'PGCOORD_TIMEOUT' || e.code === 'PGCOORD_CONNECTION') this.fail(e);
      throw e;
    }
  }

  /** Ends and closes the connection: politely when healthy, by destroying the socket otherwise. */
  async close(): Promise<void> {
    this.end();
    const client = this.client;
    client.removeAllListeners('notification');
    client.on('error', () => undefined);
    if (this.error) {
      // The socket may be wedged (server gone silent): destroy it rather than wait for a goodbye.
      client.connection.stream.destroy();
      await client.end().catch(() => undefined);
      return;
    }
    await withTimeout(client.end(), this.options.commandTimeoutMs, () => undefined).catch(() => {
      client.connection.stream.destroy();
    });
  }

  private scheduleHealthCheck(delayMs: number): void {
    this.healthTimer = setTimeout(() => this.healthCheck(), delayMs);
    // A listener alone must not keep the process alive through its timer (its socket does).
    this.healthTimer.unref();
  }

  private healthCheck(): void {
    if (this.dead) return;
    const interval = this.options.healthCheckIntervalMs;
    const idleMs = Date.now() - this.lastActivity;
    // Traffic proves the connection alive: check only after a silent interval.
    if (idleMs < interval) return this.scheduleHealthCheck(interval - idleMs);
    this.command('SELECT 1').then(
      () => {
        if (!this.dead) this.scheduleHealthCheck(interval);
      },
      () => undefined, // command() already failed the connection
    );
  }
}

/** Dials fresh `pg.Client`s from one config; abort() cuts off the dial in progress. */
export class Dialer {
  private dialing: pg.Client | undefined;

  constructor(private readonly config: pg.ClientConfig) {}

  async dial(): Promise<pg.Client> {
    const client = new pg.Client(this.config);
    client.on('error', () => undefined); // until a ListenerConnection takes over
    this.dialing = client;
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    } finally {
      if (this.dialing === client) this.dialing = undefined;
    }
    return client;
  }

  abort(): void {
    const client = this.dialing;
    if (!client) return;
    // As pg's own connect timeout does: mark the end as expected, then cut the socket with an
    // error so the pending connect() rejects instead of waiting for its timeout.
    (client.connection as unknown as { _ending: boolean })._ending = true;
    client.connection.stream.destroy(new Error('the listener is stopping'));
  }
}

/**
 * Resolves like `p`, or rejects with a TimeoutError after `ms`, or with a ClosedError when
 * `signal` aborts first; `onLate` receives a success that came after we gave up. Listeners on
 * `signal` are removed once settled, so a long-lived signal does not collect them.
 */
export function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  onLate: (value: T) => void,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = () => {
      if (settled) return;
      settle();
      reject(new ClosedError('the listener connection is closing'));
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settle();
      reject(new TimeoutError(`the listener connection gave no answer within ${ms} ms`));
    }, ms);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        if (settled) return onLate(v);
        settle();
        resolve(v);
      },
      (err: unknown) => {
        if (settled) return;
        settle();
        reject(err);
      },
    );
  });
}
