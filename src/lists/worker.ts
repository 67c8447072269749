import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  backoffDelayMs,
  checkBoolean,
  checkFunction,
  checkOptions,
  frozen,
  Lifecycle,
  optionalInt,
  reportError,
  resolveLogger,
  sleep,
  TimeoutError,
  ValidationError,
  describe,
  type ConnectionInput,
  type Logger,
  type LoggerInput,
} from '../core/index.js';
import { Listener } from '../listen/index.js';
import { ATTEMPT_LIST_LIMITS } from './attempt-list-limits.js';
import type { Claim } from './attempt-list-types.js';
import type { AttemptList } from './attempt-list.js';

/** Default items in flight per worker. */
export const DEFAULT_WORKER_CONCURRENCY = 10;
/** Default lease of a claimed item, in ms; renewed about every third of it while its handler runs. */
export const DEFAULT_WORKER_LEASE_MS = 30_000;
/** Default wait of an idle worker between claims when no notification wakes it, in ms. */
export const DEFAULT_WORKER_POLL_INTERVAL_MS = 1_000;
/** Default base of the retry backoff of a failed item, in ms (doubles per attempt). */
export const DEFAULT_WORKER_RETRY_DELAY_MS = 1_000;
/** Default cap of the retry backoff of a failed item, in ms. */
export const DEFAULT_WORKER_MAX_RETRY_DELAY_MS = 300_000;
/** Default time stop() lets in-flight handlers finish before it aborts them, in ms. */
export const DEFAULT_WORKER_STOP_TIMEOUT_MS = 30_000;
/** Most items in flight per worker. */
export const MAX_WORKER_CONCURRENCY = 10_000;
/** Longest delay or timeout option, in ms (the longest lease). */
const MAX_DELAY_MS = ATTEMPT_LIST_LIMITS.maxLeaseMs;
/** Delay before claiming again after a failed claim: first, and cap, in ms. */
const CLAIM_RETRY_BASE_MS = 50;

/**
 * Thrown by a handler to retire its item to dead at once, whatever its attempts: the failure
 * will not go away by retrying (a malformed item, a 404).
 */
export class PermanentError extends Error {
  constructor(message = 'permanent failure', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

/** What a handler gets for one item. */
export interface WorkItem {
  /** The list the item is in. */
  list: string;
  /** The item. */
  item: string;
  /** Failed attempts before this one. */
  attempts: number;
  /** The claim's token (see {@link AttemptList.claim}). */
  token: string;
  /** When the lease ended at claim time (heartbeats extend it). */
  leaseUntil: Date;
}

/** The second argument of a handler. */
export interface WorkContext {
  /**
   * Aborted when the item's lease is lost, its `timeoutMs` passes, or stop()'s deadline passes:
   * stop then; whatever the handler does afterwards is not applied.
   */
  signal: AbortSignal;
}

/** Processes one item: resolve completes it, a throw fails it (see {@link PermanentError}). */
export type WorkHandler = (item: WorkItem, context: WorkContext) => Promise<void>;

/** Options of {@link AttemptList.work}. */
export interface WorkerOptions {
  /** Items in flight at once, 1 to 10,000. Default 10. */
  concurrency?: number;
  /** Lease of each claim, ms (renewed about every third of it while the handler runs). Default 30 s. */
  leaseMs?: number;
  /** Idle wait between claims when no notification comes, ms. Default 1 s. */
  pollIntervalMs?: number;
  /** An item reaching this many attempts becomes dead. Default: the list's `maxAttempts`. */
  maxAttempts?: number;
  /**
   * Delay before a failed item can run again: the base of an exponential backoff with equal
   * jitter (ms, default 1 s, capped by `maxRetryDelayMs`), or a function of the attempts so far
   * (counting this failure) and the error returning ms.
   */
  retryDelayMs?: number | ((attempts: number, error: unknown) => number);
  /** Cap of the retry backoff, ms. Default 5 minutes. */
  maxRetryDelayMs?: number;
  /** A handler running longer is aborted and its item failed, ms. Default: no limit. */
  timeoutMs?: number;
  /** stop() lets in-flight handlers finish this long, then aborts them, ms. Default 30 s. */
  stopTimeoutMs?: number;
  /** Stop gracefully on SIGTERM and SIGINT. Default false. */
  handleSignals?: boolean;
  /**
   * A Listener to be woken through (started by you; the worker only handles and unhandles its
   * channel). Without it nor `connection`, the worker polls only.
   */
  listener?: Listener;
  /** Connection settings of a Listener the worker owns (started and stopped with it). */
  connection?: ConnectionInput;
  /** Where background failures go when nobody listens for 'error'. Default: nowhere. */
  logger?: LoggerInput;
}

/** {@link WorkerOptions} resolved: every default applied, frozen. */
export interface ResolvedWorkerOptions {
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly pollIntervalMs: number;
  readonly maxAttempts: number | undefined;
  readonly retryDelay: (attempts: number, error: unknown) => number;
  readonly timeoutMs: number | undefined;
  readonly stopTimeoutMs: number;
  readonly handleSignals: boolean;
  readonly listener: Listener | undefined;
  readonly connection: ConnectionInput | undefined;
  readonly logger: Logger;
}

/** Validates {@link WorkerOptions} and applies the defaults. */
export function resolveWorkerOptions(options: WorkerOptions = {}): ResolvedWorkerOptions {
  const o = checkOptions('options', options);
  const delay = (name: string, value: unknown, fallback: number) =>
    optionalInt(`options.${name}`, value, { min: 0, max: MAX_DELAY_MS }, fallback);
  const concurrency = optionalInt(
    'options.concurrency',
    o.concurrency,
    { min: 1, max: MAX_WORKER_CONCURRENCY },
    DEFAULT_WORKER_CONCURRENCY,
  );
  const leaseMs = optionalInt(
    'options.leaseMs',
    o.leaseMs,
    { min: 30, max: MAX_DELAY_MS },
    DEFAULT_WORKER_LEASE_MS,
  );
  const pollIntervalMs = optionalInt(
    'options.pollIntervalMs',
    o.pollIntervalMs,
    { min: 1, max: MAX_DELAY_MS },
    DEFAULT_WORKER_POLL_INTERVAL_MS,
  );
  const maxAttempts = optionalInt(
    'options.maxAttempts',
    o.maxAttempts,
    { min: 1, max: ATTEMPT_LIST_LIMITS.maxAttempts },
    0,
  );
  const maxRetryDelayMs = delay(
    'maxRetryDelayMs',
    o.maxRetryDelayMs,
    DEFAULT_WORKER_MAX_RETRY_DELAY_MS,
  );
  let retryDelay: (attempts: number, error: unknown) => number;
  if (typeof o.retryDelayMs === 'function') {
    const fn = o.retryDelayMs;
    retryDelay = (attempts, error) => clampDelay(fn(attempts, error));
  } else {
    const baseMs = delay('retryDelayMs', o.retryDelayMs, DEFAULT_WORKER_RETRY_DELAY_MS);
    retryDelay = (attempts) =>
      backoffDelayMs(attempts, {
        baseMs,
        maxMs: Math.max(baseMs, maxRetryDelayMs),
        jitter: 'equal',
      });
  }
  const timeoutMs = optionalInt('options.timeoutMs', o.timeoutMs, { min: 1, max: MAX_DELAY_MS }, 0);
  if (o.listener !== undefined && !(o.listener instanceof Listener)) {
    throw new ValidationError(
      'options.listener',
      `must be a Listener, got ${describe(o.listener)}`,
    );
  }
  if (
    o.connection !== undefined &&
    typeof o.connection !== 'string' &&
    (typeof o.connection !== 'object' || o.connection === null)
  ) {
    throw new ValidationError(
      'options.connection',
      `must be a connection string or pg client settings, got ${describe(o.connection)}`,
    );
  }
  if (o.listener !== undefined && o.connection !== undefined) {
    throw new ValidationError('options', 'give listener or connection, not both');
  }
  return frozen({
    concurrency,
    leaseMs,
    heartbeatMs: Math.max(10, Math.floor(leaseMs / 3)),
    pollIntervalMs,
    maxAttempts: maxAttempts === 0 ? undefined : maxAttempts,
    retryDelay,
    timeoutMs: timeoutMs === 0 ? undefined : timeoutMs,
    stopTimeoutMs: delay('stopTimeoutMs', o.stopTimeoutMs, DEFAULT_WORKER_STOP_TIMEOUT_MS),
    handleSignals: checkBoolean('options.handleSignals', o.handleSignals, false),
    listener: o.listener,
    connection: o.connection,
    logger: resolveLogger(o.logger),
  });
}

/** A delay returned by a user's function, made a whole number of ms in range. */
function clampDelay(ms: number): number {
  if (typeof ms !== 'number' || Number.isNaN(ms)) return DEFAULT_WORKER_RETRY_DELAY_MS;
  return Math.min(MAX_DELAY_MS, Math.max(0, Math.round(ms)));
}

/**
 * The LISTEN/NOTIFY channel inserts into `list` of `schema` notify on: `pgcoord_work_` and the
 * md5 of `schema.list` (45 bytes, within PostgreSQL's 63 whatever the names).
 */
export function workChannel(schema: string, list: string): string {
  return `pgcoord_work_${createHash('md5').update(`${schema}.${list}`).digest('hex')}`;
}

/** Counters of a {@link Worker} since it was made. */
export interface WorkerMetrics {
  /** Items handed to this worker by claims. */
  claimed: number;
  /** Handlers started. */
  started: number;
  /** Items completed. */
  completed: number;
  /** Failures recorded (retried later), dead ones included. */
  failed: number;
  /** Items retired to dead. */
  dead: number;
  /** Handlers aborted by their timeout. */
  timedOut: number;
  /** Items whose lease was lost while their handler ran. */
  leaseLost: number;
  /** Items given back without an attempt counted (on stop). */
  released: number;
  /** Claim round trips (each also carried the completions so far). */
  claims: number;
  /** Handlers running now. */
  inFlight: number;
}

/** Events of a {@link Worker}. */
export interface WorkerEvents {
  'item:start': [WorkItem];
  'item:complete': [WorkItem];
  'item:fail': [WorkItem & { error: unknown; retryDelayMs: number }];
  'item:dead': [WorkItem & { error: unknown }];
  'lease:lost': [WorkItem];
  /** Nothing claimable and nothing in flight: the worker waits for a notification or the poll. */
  idle: [];
  stopped: [];
  error: [Error];
}

interface Running {
  claim: Claim;
  work: WorkItem;
  controller: AbortController;
  /** First of: the handler settled, the lease was lost, the timeout or the stop deadline passed. */
  settled: boolean;
  /** Local time by which the lease surely ends unless extended again. */
  deadline: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Resolves when the handler's promise settles (whatever happened to the item). */
  finished: Promise<void>;
}

/**
 * Works a list: claims items in batches, runs `handler` on each with at most `concurrency` in
 * flight, completes the finished ones with the next claim (one round trip), fails the ones that
 * threw with a backoff, extends leases while handlers run, and wakes on inserts. Made and
 * started by {@link AttemptList.work}.
 */
export class Worker extends EventEmitter<WorkerEvents> {
  /** The list worked. */
  readonly list: string;
  /** The resolved options. */
  readonly options: ResolvedWorkerOptions;
  private readonly attemptList: AttemptList;
  private readonly handler: WorkHandler;
  private readonly channel: string;
  private readonly lifecycle: Lifecycle;
  private readonly running = new Map<string, Running>();
  private done: Claim[] = [];
  private readonly counters = {
    claimed: 0,
    started: 0,
    completed: 0,
    failed: 0,
    dead: 0,
    timedOut: 0,
    leaseLost: 0,
    released: 0,
    claims: 0,
  };
  private loop: Promise<void> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private heartbeating: Promise<void> | undefined;
  private wakeResolve: (() => void) | undefined;
  private woken = false;
  private stopping = false;
  private ownListener: Listener | undefined;
  private onSignal: (() => void) | undefined;
  private readonly settles = new Set<Promise<unknown>>();

  /** Use {@link AttemptList.work}. */
  constructor(
    attemptList: AttemptList,
    schema: string,
    list: string,
    handler: WorkHandler,
    options: WorkerOptions = {},
  ) {
    super();
    this.handler = checkFunction<WorkHandler>('handler', handler);
    this.options = resolveWorkerOptions(options);
    this.attemptList = attemptList;
    this.list = list;
    this.channel = workChannel(schema, list);
    if (this.options.connection !== undefined) {
      // Made here so bad connection settings fail before anything starts.
      const own = new Listener({
        connection: this.options.connection,
        logger: this.options.logger,
      });
      own.on('error', (err) =>
        reportError(this, this.options.logger, err, 'worker listener failed'),
      );
      const wake = () => this.wake();
      own.handle(this.channel, wake, { backlog: wake });
      this.ownListener = own;
    }
    this.lifecycle = new Lifecycle(
      { name: `worker ${list}` },
      { start: () => this.begin(), stop: () => this.end() },
    );
  }

  /** Test signals: `started`, `stopped`. */
  get signals() {
    return this.lifecycle.signals;
  }

  /** Starts working (done by {@link AttemptList.work}). Idempotent. */
  start(): Promise<void> {
    return this.lifecycle.start();
  }

  /**
   * Stops gracefully: claims nothing more, lets in-flight handlers finish up to `stopTimeoutMs`
   * and completes them, aborts and releases the rest. Idempotent.
   */
  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  /** Same as {@link stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.lifecycle.stop();
  }

  /** Counters since the worker was made. */
  metrics(): WorkerMetrics {
    return { ...this.counters, inFlight: this.running.size };
  }

  private begin(): void {
    this.stopping = false;
    const { listener, handleSignals } = this.options;
    const wake = () => this.wake();
    if (listener) {
      listener.handle(this.channel, wake, { backlog: wake });
    } else if (this.ownListener) {
      // Connects in the background (and keeps retrying); polling covers the meantime.
      this.ownListener
        .start()
        .catch((err: unknown) =>
          reportError(this, this.options.logger, err, 'worker listener failed to start'),
        );
    }
    if (handleSignals) {
      this.onSignal = () => void this.stop();
      process.once('SIGTERM', this.onSignal);
      process.once('SIGINT', this.onSignal);
    }
    this.heartbeat = setInterval(() => this.beat(), this.options.heartbeatMs);
    this.loop = this.run();
  }

  private async end(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loop;
    // Let in-flight handlers finish up to the deadline, then abort the rest.
    if (this.running.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.stopTimeoutMs);
      });
      await Promise.race([
        Promise.all([...this.running.values()].map((r) => r.finished)),
        deadline,
      ]);
      clearTimeout(timer);
      const aborted = [...this.running.values()].filter((r) => !r.settled);
      for (const r of aborted) this.settle(r);
      for (const r of aborted) r.controller.abort(new Error('worker stopped'));
      // Aborted by us, not by the item: give them back without counting an attempt.
      await this.release(aborted.map((r) => r.claim));
    }
    clearInterval(this.heartbeat);
    await this.heartbeating;
    await Promise.all([...this.settles]);
    await this.flush();
    if (this.onSignal) {
      process.removeListener('SIGTERM', this.onSignal);
      process.removeListener('SIGINT', this.onSignal);
      this.onSignal = undefined;
    }
    if (this.options.listener) this.options.listener.unhandle(this.channel);
    await this.ownListener?.stop();
    this.emit('stopped');
  }

  /** The claim loop: claim for free slots (sending completions along), start, wait, repeat. */
  private async run(): Promise<void> {
    const { concurrency, leaseMs, maxAttempts, pollIntervalMs } = this.options;
    let failures = 0;
    let idle = false;
    while (!this.stopping) {
      const free = concurrency - this.running.size;
      if (free > 0 || this.done.length > 0) {
        const done = this.done;
        this.done = [];
        let claims: Claim[];
        try {
          const r = await this.attemptList.completeAndClaim(this.list, done, {
            limit: free,
            leaseMs,
            maxAttempts,
          });
          this.counters.claims++;
          this.counters.completed += r.count;
          claims = r.claims;
          failures = 0;
        } catch (err) {
          // Completions may or may not have been applied: sending them again is safe (a
          // completed item's token is stale, never applied twice).
          this.done = done.concat(this.done);
          reportError(this, this.options.logger, err, 'worker claim failed', { list: this.list });
          failures++;
          await sleep(
            backoffDelayMs(failures, {
              baseMs: CLAIM_RETRY_BASE_MS,
              maxMs: pollIntervalMs,
              jitter: 'equal',
            }),
            this.lifecycle.signal,
          );
          continue;
        }
        if (this.stopping) {
          await this.release(claims);
          break;
        }
        for (const claim of claims) this.startOne(claim);
        if (claims.length > 0) idle = false;
        if (claims.length === free && free > 0) continue;
      }
      if (this.running.size === 0 && this.done.length === 0 && !idle) {
        idle = true;
        this.emit('idle');
      }
      await this.waitForWake(this.running.size < concurrency ? pollIntervalMs : undefined);
    }
  }

  private startOne(claim: Claim): void {
    this.counters.claimed++;
    this.counters.started++;
    const work: WorkItem = {
      list: this.list,
      item: claim.item,
      attempts: claim.attempts,
      token: claim.token,
      leaseUntil: claim.leaseUntil,
    };
    const controller = new AbortController();
    const r: Running = {
      claim,
      work,
      controller,
      settled: false,
      deadline: Date.now() + this.options.leaseMs,
      timer: undefined,
      finished: Promise.resolve(),
    };
    this.running.set(claim.item, r);
    const { timeoutMs } = this.options;
    if (timeoutMs !== undefined) {
      r.timer = setTimeout(() => {
        if (r.settled) return;
        this.settle(r);
        this.counters.timedOut++;
        const error = new TimeoutError(`handler of ${claim.item} ran over ${timeoutMs} ms`);
        controller.abort(error);
        this.track(this.failOne(r, error));
      }, timeoutMs);
    }
    this.emit('item:start', work);
    r.finished = (async () => {
      try {
        await this.handler(work, { signal: controller.signal });
      } catch (err) {
        if (r.settled) return;
        this.settle(r);
        const failing = this.failOne(r, err);
        this.track(failing);
        await failing;
        return;
      }
      if (r.settled) return;
      this.settle(r);
      this.done.push(claim);
      this.emit('item:complete', work);
    })().catch((err: unknown) => {
      reportError(this, this.options.logger, err, 'worker handler bookkeeping failed');
    });
  }

  /** Marks an item's outcome decided, frees its slot and wakes the loop. */
  private settle(r: Running): void {
    r.settled = true;
    clearTimeout(r.timer);
    this.running.delete(r.claim.item);
    this.wake();
  }

  private track(p: Promise<unknown>): void {
    this.settles.add(p);
    void p.finally(() => this.settles.delete(p));
  }

  private async failOne(r: Running, error: unknown): Promise<void> {
    const permanent = error instanceof PermanentError;
    const attempts = r.work.attempts + 1;
    const retryDelayMs = permanent ? 0 : this.options.retryDelay(attempts, error);
    try {
      const result = await this.attemptList.fail(this.list, [r.claim], {
        retryDelayMs,
        maxAttempts: permanent ? attempts : this.options.maxAttempts,
      });
      if (result.stale.length > 0) return this.lost(r);
      this.counters.failed++;
      if (result.dead.length > 0) {
        this.counters.dead++;
        this.emit('item:dead', { ...r.work, error });
      } else {
        this.emit('item:fail', { ...r.work, error, retryDelayMs });
      }
    } catch (err) {
      // The item comes back when its lease ends, with the attempt counted then.
      reportError(this, this.options.logger, err, 'worker could not record a failure', {
        list: this.list,
        item: r.work.item,
      });
    }
  }

  private lost(r: Running): void {
    this.counters.leaseLost++;
    this.emit('lease:lost', r.work);
  }

  /** Extends the leases of running handlers; aborts the ones whose lease is gone. */
  private beat(): void {
    if (this.heartbeating || this.running.size === 0) return;
    const batch = [...this.running.values()];
    this.heartbeating = (async () => {
      try {
        const r = await this.attemptList.extend(
          this.list,
          batch.map((x) => x.claim),
          { leaseMs: this.options.leaseMs },
        );
        const stale = new Set(r.stale);
        const now = Date.now();
        for (const x of batch) {
          if (stale.has(x.claim.item)) this.loseLease(x);
          else x.deadline = now + this.options.leaseMs;
        }
      } catch (err) {
        reportError(this, this.options.logger, err, 'worker heartbeat failed', { list: this.list });
        // The lease may still hold; once it surely ended, someone else may run the item.
        const now = Date.now();
        for (const x of batch) if (now >= x.deadline) this.loseLease(x);
      } finally {
        this.heartbeating = undefined;
      }
    })();
  }

  private loseLease(r: Running): void {
    if (r.settled) return;
    this.settle(r);
    this.lost(r);
    r.controller.abort(new Error(`lease of ${r.work.item} lost`));
  }

  /** Gives claims back without counting an attempt. */
  private async release(claims: Claim[]): Promise<void> {
    if (claims.length === 0) return;
    try {
      const r = await this.attemptList.release(this.list, claims);
      this.counters.released += r.count;
    } catch (err) {
      reportError(this, this.options.logger, err, 'worker could not release items', {
        list: this.list,
      });
    }
  }

  /** Sends the completions not yet sent. */
  private async flush(): Promise<void> {
    for (let tries = 0; this.done.length > 0 && tries < 3; tries++) {
      const done = this.done;
      this.done = [];
      try {
        const r = await this.attemptList.complete(this.list, done);
        this.counters.completed += r.count;
      } catch (err) {
        this.done = done.concat(this.done);
        reportError(this, this.options.logger, err, 'worker could not complete items', {
          list: this.list,
        });
      }
    }
  }

  private wake(): void {
    this.woken = true;
    const resolve = this.wakeResolve;
    this.wakeResolve = undefined;
    resolve?.();
  }

  private async waitForWake(timeoutMs: number | undefined): Promise<void> {
    if (this.woken || this.stopping) {
      this.woken = false;
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.wakeResolve = resolve;
      if (timeoutMs !== undefined) timer = setTimeout(resolve, timeoutMs);
    });
    clearTimeout(timer);
    this.wakeResolve = undefined;
    this.woken = false;
  }
}
