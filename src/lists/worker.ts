import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  backoffDelayMs,
  checkFunction,
  Lifecycle,
  reportError,
  TimeoutError,
} from '../core/index.js';
import { Listener, subscribeWakeups } from '../listen/index.js';
import type { Claim } from './attempt-list-types.js';
import type { AttemptList } from './attempt-list.js';
import { LiveRow, type LiveWorkers } from './live-workers.js';
import type { WorkerEvents, WorkerMetrics } from './worker-events.js';
import { applyLimits, CLAIM_RETRY_BASE_MS } from './worker-limits.js';
import {
  PermanentError,
  resolveWorkerOptions,
  workChannel,
  workItem,
  type ResolvedWorkerOptions,
  type WorkHandler,
  type WorkItem,
  type WorkerOptions,
} from './worker-options.js';

export type { WorkerEvents, WorkerMetrics } from './worker-events.js';

interface Queued {
  claim: Claim;
  /** Local time by which the lease surely ends unless extended again. */
  deadline: number;
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
  /** This worker's id (a random UUID): the `id` of its row in {@link AttemptList.workers}. */
  readonly id: string = randomUUID();
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
  /** When (performance.now()) the oldest completion not yet sent was made. */
  private doneSince = 0;
  private readonly counters = {
    claimed: 0,
    started: 0,
    completed: 0,
    failed: 0,
    dead: 0,
    timedOut: 0,
    leaseLost: 0,
    released: 0,
    staleCompletions: 0,
    claims: 0,
  };
  private loop: Promise<void> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private heartbeating: Promise<void> | undefined;
  /** This worker's row in the live-workers table ({@link AttemptList.workers}). */
  private readonly liveRow: LiveRow;
  /** Removes this worker from the shared listener's wake-ups (when given a `listener`). */
  private unsubscribeWake: (() => void) | undefined;
  private wakeResolve: (() => void) | undefined;
  private woken = false;
  /** Wakes from outside the claim loop so far (a claim started before the last one is stale). */
  private wakes = 0;
  /** Whether claiming may find items: false after a short batch, until the next wake. */
  private more = true;
  /** Claimed ahead (`prefetch`), not started yet, oldest first. */
  private queued: Queued[] = [];
  /** Claim round trips in flight, and the slots they asked for. */
  private readonly claiming = new Set<Promise<void>>();
  private reserved = 0;
  /** Consecutive failed claims, and when (performance.now()) the next may go. */
  private failures = 0;
  private retryAt = 0;
  /** When (performance.now()) the list's limits may let a short claim have more (see run). */
  private nextSlotAt: number | undefined;
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
    options: WorkerOptions,
    live: LiveWorkers,
  ) {
    super();
    this.handler = checkFunction<WorkHandler>('handler', handler);
    this.options = resolveWorkerOptions(options);
    this.liveRow = new LiveRow({
      live,
      id: this.id,
      list,
      concurrency: this.options.concurrency,
      inFlight: () => this.running.size,
      ttlMs: this.options.liveTtlMs,
      intervalMs: this.options.liveIntervalMs,
      emitter: this,
      logger: this.options.logger,
    });
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
      this.unsubscribeWake = subscribeWakeups(listener, this.channel, wake);
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
    this.liveRow.start();
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
    await this.liveRow.stop();
    if (this.onSignal) {
      process.removeListener('SIGTERM', this.onSignal);
      process.removeListener('SIGINT', this.onSignal);
      this.onSignal = undefined;
    }
    this.unsubscribeWake?.();
    this.unsubscribeWake = undefined;
    await this.ownListener?.stop();
    this.emit('stopped');
  }

  /**
   * The claim loop: claims for free slots (sending completions along), at most `batchSize` per
   * round trip and `concurrency / batchSize` round trips at once, starts what comes back, waits
   * for a wake (a settled handler, a returned claim, a notification, the poll), repeats.
   */
  private async run(): Promise<void> {
    const { concurrency, pollIntervalMs } = this.options;
    // The handlers started when 'idle' was last emitted: once per quiet spell, not per poll.
    let idleAt = -1;
    await applyLimits(this.attemptList, this.list, this.options, {
      emitter: this,
      stopping: () => this.stopping,
      signal: this.lifecycle.signal,
    });
    while (!this.stopping) {
      this.startQueued();
      this.launchClaims();
      const quiet =
        this.claiming.size === 0 &&
        this.running.size === 0 &&
        this.queued.length === 0 &&
        this.done.length === 0;
      if (quiet && idleAt !== this.counters.started) {
        idleAt = this.counters.started;
        this.emit('idle');
      }
      const waitMs = Math.max(0, this.retryAt - performance.now());
      const free = this.running.size + this.queued.length + this.reserved < concurrency;
      // When the list's limits left the last claim short: how long until a slot may free (server
      // clock), so the worker looks again then rather than at the poll.
      const slotMs =
        this.nextSlotAt === undefined
          ? pollIntervalMs
          : Math.min(pollIntervalMs, Math.max(1, Math.ceil(this.nextSlotAt - performance.now())));
      await this.waitForWake(waitMs > 0 ? waitMs : free ? slotMs : undefined);
    }
    await Promise.all([...this.claiming]);
    // Claimed ahead but never started: give them back without counting an attempt.
    const unstarted = this.queued.map((q) => q.claim);
    this.queued = [];
    await this.release(unstarted);
  }

  /** Starts claimed-ahead items while slots are free. */
  private startQueued(): void {
    const { concurrency } = this.options;
    let i = 0;
    while (i < this.queued.length && this.running.size < concurrency && !this.stopping) {
      const q = this.queued[i++]!;
      this.startOne(q.claim, q.deadline);
    }
    if (i > 0) this.queued = this.queued.slice(i);
  }

  /** Starts claim round trips while slots are free (or completions wait) and the limits allow. */
  private launchClaims(): void {
    const { concurrency, batchSize, prefetch } = this.options;
    const capacity = concurrency + prefetch;
    const most = Math.ceil(capacity / batchSize);
    while (!this.stopping && this.claiming.size < most && performance.now() >= this.retryAt) {
      const held = this.running.size + this.queued.length + this.reserved;
      const limit = Math.min(batchSize, capacity - held);
      // While claimed-ahead items wait, no slot idles: only full batches are worth a round trip
      // (completions ride along with them, or go once nothing waits).
      // Completed items are no longer heartbeated: never hold them past a heartbeat interval.
      const waiting = this.queued.length > 0;
      const overdue = performance.now() - this.doneSince >= this.options.heartbeatMs;
      const claimMore = limit > 0 && this.more && (!waiting || limit === batchSize);
      if (!claimMore && (this.done.length === 0 || (waiting && !overdue))) return;
      const claim = this.claimOnce(claimMore ? limit : 0);
      this.claiming.add(claim);
      void claim.finally(() => this.claiming.delete(claim));
    }
  }

  /** One completeAndClaim round trip: sends the completions so far, claims up to `limit`. */
  private async claimOnce(limit: number): Promise<void> {
    const { leaseMs, maxAttempts, pollIntervalMs } = this.options;
    const done = this.done;
    this.done = [];
    this.reserved += limit;
    const wakes = this.wakes;
    try {
      let claims: Claim[];
      try {
        const r = await this.attemptList.completeAndClaim(this.list, done, {
          limit,
          leaseMs,
          maxAttempts,
        });
        this.counters.claims++;
        this.counters.completed += r.count;
        this.counters.staleCompletions += r.stale.length;
        claims = r.claims;
        this.failures = 0;
        // Short under the list's limits: a slot may free in nextSlotMs (server clock).
        if (limit > 0) {
          this.nextSlotAt =
            claims.length < limit && r.nextSlotMs !== undefined
              ? performance.now() + r.nextSlotMs
              : undefined;
        }
      } catch (err) {
        // Completions may or may not have been applied: sending them again is safe (a
        // completed item's token is stale, never applied twice).
        this.done = done.concat(this.done);
        reportError(this, this.options.logger, err, 'worker claim failed', { list: this.list });
        this.failures++;
        this.retryAt =
          performance.now() +
          backoffDelayMs(this.failures, {
            baseMs: CLAIM_RETRY_BASE_MS,
            maxMs: pollIntervalMs,
            jitter: 'equal',
          });
        return;
      }
      if (this.stopping) {
        await this.release(claims);
        return;
      }
      this.counters.claimed += claims.length;
      const deadline = Date.now() + leaseMs;
      for (const claim of claims) this.queued.push({ claim, deadline });
      this.startQueued();
      // A short batch means nothing more is claimable now: claim again on the next wake (a
      // settled handler, a notification, the poll), unless one came while this claim ran.
      if (claims.length < limit && wakes === this.wakes) this.more = false;
    } finally {
      this.reserved -= limit;
      this.signalLoop();
    }
  }

  private startOne(claim: Claim, deadline: number): void {
    this.counters.started++;
    const work = workItem(this.list, claim);
    const controller = new AbortController();
    const r: Running = {
      claim,
      work,
      controller,
      settled: false,
      deadline,
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
      if (this.done.length === 0) this.doneSince = performance.now();
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

  /**
   * Extends the leases of running handlers and claimed-ahead items; aborts the handlers whose
   * lease is gone and drops such items.
   */
  private beat(): void {
    if (this.done.length > 0) this.signalLoop(); // held completions may be due (launchClaims)
    if (this.heartbeating || (this.running.size === 0 && this.queued.length === 0)) return;
    const batch = [...this.running.values()];
    const ahead = this.queued;
    this.heartbeating = (async () => {
      try {
        const r = await this.attemptList.extend(
          this.list,
          batch.map((x) => x.claim).concat(ahead.map((q) => q.claim)),
          { leaseMs: this.options.leaseMs },
        );
        const stale = new Set(r.stale);
        const now = Date.now();
        for (const x of batch) {
          if (stale.has(x.claim.item)) this.loseLease(x);
          else x.deadline = now + this.options.leaseMs;
        }
        // Claimed-ahead items may have started since: their Running took the deadline then.
        for (const q of ahead) {
          if (stale.has(q.claim.item)) this.loseAhead(q);
          else q.deadline = now + this.options.leaseMs;
        }
      } catch (err) {
        reportError(this, this.options.logger, err, 'worker heartbeat failed', { list: this.list });
        // The lease may still hold; once it surely ended, someone else may run the item.
        const now = Date.now();
        for (const x of batch) if (now >= x.deadline) this.loseLease(x);
        for (const q of ahead) if (now >= q.deadline) this.loseAhead(q);
      } finally {
        this.heartbeating = undefined;
      }
    })();
  }

  /** A claimed-ahead item's lease is gone: drop it if still waiting, else lose its handler's. */
  private loseAhead(q: Queued): void {
    const i = this.queued.indexOf(q);
    if (i >= 0) {
      this.queued.splice(i, 1);
      this.counters.leaseLost++;
      this.emit('lease:lost', workItem(this.list, q.claim));
      return;
    }
    const r = this.running.get(q.claim.item);
    if (r !== undefined && r.claim === q.claim) this.loseLease(r);
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
        this.counters.staleCompletions += r.stale.length;
      } catch (err) {
        this.done = done.concat(this.done);
        reportError(this, this.options.logger, err, 'worker could not complete items', {
          list: this.list,
        });
      }
    }
  }

  /** Something happened that may make items claimable or free a slot: claim again. */
  private wake(): void {
    this.wakes++;
    this.more = true;
    this.signalLoop();
  }

  /** Lets the claim loop look again (a claim returned) without claiming for it alone. */
  private signalLoop(): void {
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
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.more = true; // the poll: look again whatever the last claim found
          resolve();
        }, timeoutMs);
      }
    });
    clearTimeout(timer);
    this.wakeResolve = undefined;
    this.woken = false;
  }
}
