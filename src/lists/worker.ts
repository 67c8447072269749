import { EventEmitter } from 'node:events';
import {
  backoffDelayMs,
  checkFunction,
  Lifecycle,
  reportError,
  sleep,
  TimeoutError,
} from '../core/index.js';
import { Listener } from '../listen/index.js';
import type { Claim } from './attempt-list-types.js';
import type { StoredListLimits } from './attempt-list-settings.js';
import type { AttemptList } from './attempt-list.js';
import {
  PermanentError,
  resolveWorkerOptions,
  workChannel,
  type ResolvedWorkerOptions,
  type WorkHandler,
  type WorkItem,
  type WorkerOptions,
} from './worker-options.js';

/** Stored limits with a worker's over them (a field the worker gives replaces the stored one). */
function mergeLimits(stored: StoredListLimits, wanted: StoredListLimits): StoredListLimits {
  const out: StoredListLimits = {};
  const keyRegex = wanted.keyRegex ?? stored.keyRegex;
  if (keyRegex !== undefined) out.keyRegex = keyRegex;
  const perKey = { ...stored.perKey, ...wanted.perKey };
  if (perKey.concurrency !== undefined || perKey.rate !== undefined) {
    out.perKey = {};
    if (perKey.concurrency !== undefined) out.perKey.concurrency = perKey.concurrency;
    if (perKey.rate !== undefined) out.perKey.rate = perKey.rate;
  }
  const concurrency = wanted.concurrency ?? stored.concurrency;
  if (concurrency !== undefined) out.concurrency = concurrency;
  return out;
}

/** Delay before claiming again after a failed claim: first, and cap, in ms. */
const CLAIM_RETRY_BASE_MS = 50;

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

  /**
   * Stores the worker's `limits` on the list when they differ from the stored ones (fields it
   * leaves out keep their stored values). Retried with the claim backoff until it succeeds or the
   * worker stops: no item is claimed under other limits than the ones asked for.
   */
  private async applyLimits(): Promise<void> {
    const wanted = this.options.limits;
    if (wanted === undefined) return;
    for (let failures = 1; !this.stopping; failures++) {
      try {
        const stored = await this.attemptList.limits(this.list);
        const merged = mergeLimits(stored, wanted);
        if (JSON.stringify(merged) !== JSON.stringify(stored)) {
          await this.attemptList.setLimits(this.list, merged);
        }
        return;
      } catch (err) {
        reportError(this, this.options.logger, err, 'worker could not set the list limits', {
          list: this.list,
        });
        await sleep(
          backoffDelayMs(failures, {
            baseMs: CLAIM_RETRY_BASE_MS,
            maxMs: this.options.pollIntervalMs,
            jitter: 'equal',
          }),
          this.lifecycle.signal,
        );
      }
    }
  }

  /** The claim loop: claim for free slots (sending completions along), start, wait, repeat. */
  private async run(): Promise<void> {
    const { concurrency, leaseMs, maxAttempts, pollIntervalMs } = this.options;
    let failures = 0;
    let idle = false;
    await this.applyLimits();
    while (!this.stopping) {
      // When the list's limits left the claim short: how long until a slot may free (server
      // clock), so the worker sleeps until then rather than until the poll.
      let nextSlotMs: number | undefined;
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
          nextSlotMs = r.nextSlotMs;
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
      await this.waitForWake(
        this.running.size < concurrency
          ? Math.min(pollIntervalMs, Math.max(1, Math.ceil(nextSlotMs ?? pollIntervalMs)))
          : undefined,
      );
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
