// The options of a Worker (list.work()): defaults, limits and their resolution, the handler's
// types, PermanentError, and the channel inserts wake workers on.
import { createHash } from 'node:crypto';
import {
  backoffDelayMs,
  checkBoolean,
  checkOptions,
  frozen,
  optionalInt,
  resolveLogger,
  ValidationError,
  describe,
  type ConnectionInput,
  type Logger,
  type LoggerInput,
} from '../core/index.js';
import { Listener } from '../listen/index.js';
import type { Claim } from './attempt-list-types.js';
import { ATTEMPT_LIST_LIMITS } from './attempt-list-limits.js';
import { checkLimits, type ListLimits, type StoredListLimits } from './attempt-list-settings.js';

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
/**
 * Default horizon of a worker's row in the live-workers table, in ms: a row not refreshed for
 * this long (its worker died without stopping) no longer counts as live and is pruned.
 */
export const DEFAULT_WORKER_LIVE_TTL_MS = 60_000;
/** Longest gap between two refreshes of a worker's live row, in ms. */
export const MAX_WORKER_LIVE_INTERVAL_MS = 5_000;
/** Most items in flight per worker. */
export const MAX_WORKER_CONCURRENCY = 10_000;
/** Longest delay option the server applies (a retry delay), in ms: the longest lease. */
const MAX_DELAY_MS = ATTEMPT_LIST_LIMITS.maxLeaseMs;
/**
 * Longest option this process waits out on a timer (timeoutMs, stopTimeoutMs, pollIntervalMs), in
 * ms: 2^31 - 1, about 24.8 days. Node runs a longer setTimeout after 1 ms instead.
 */
export const MAX_WORKER_TIMER_MS = 2_147_483_647;

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
  /**
   * Most items one claim round trip takes, 1 to 10,000. Default: `concurrency`, so one claim at a
   * time. Below `concurrency + prefetch`, up to `(concurrency + prefetch) / batchSize` claims run
   * at once (each on a connection of the pool), refilling in batches of this size as slots free.
   */
  batchSize?: number;
  /**
   * Items claimed ahead of free slots, 0 to 10,000. Default 0. They wait in the worker (their
   * leases extended by the heartbeat) and start the moment a slot frees, so short handlers never
   * wait for a claim round trip; stop() gives back the ones that never started.
   */
  prefetch?: number;
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
   * Horizon of the worker's row in the live-workers table ({@link AttemptList.workers}), ms: the
   * row is refreshed every `min(5 s, liveTtlMs / 3)`, and one not refreshed for
   * `liveTtlMs` (its worker died without stopping) no longer counts as live and is deleted by the
   * next refresh of any worker of the schema. 30 ms to 30 days. Default 60 s.
   */
  liveTtlMs?: number;
  /**
   * A Listener to be woken through (started by you; the worker only handles and unhandles its
   * channel). Without it nor `connection`, the worker polls only.
   */
  listener?: Listener;
  /** Connection settings of a Listener the worker owns (started and stopped with it). */
  connection?: ConnectionInput;
  /** Where background failures go when nobody listens for 'error'. Default: nowhere. */
  logger?: LoggerInput;
  /**
   * Limits of the list ({@link AttemptList.setLimits}): stored on the list when the worker
   * starts, if they differ (a field left out keeps its stored value), before its first claim.
   * They bind every worker of the list, so give every worker the same (or none). Default: the
   * stored limits as they are.
   */
  limits?: ListLimits;
}

/** {@link WorkerOptions} resolved: every default applied, frozen. */
export interface ResolvedWorkerOptions {
  readonly concurrency: number;
  readonly batchSize: number;
  readonly prefetch: number;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly pollIntervalMs: number;
  readonly maxAttempts: number | undefined;
  readonly retryDelay: (attempts: number, error: unknown) => number;
  readonly timeoutMs: number | undefined;
  readonly stopTimeoutMs: number;
  readonly handleSignals: boolean;
  readonly liveTtlMs: number;
  /** Gap between two refreshes of the live row, ms. */
  readonly liveIntervalMs: number;
  readonly listener: Listener | undefined;
  readonly connection: ConnectionInput | undefined;
  readonly logger: Logger;
  readonly limits: StoredListLimits | undefined;
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
  const prefetch = optionalInt(
    'options.prefetch',
    o.prefetch,
    { min: 0, max: MAX_WORKER_CONCURRENCY },
    0,
  );
  const batchSize = Math.min(
    concurrency + prefetch,
    optionalInt(
      'options.batchSize',
      o.batchSize,
      { min: 1, max: ATTEMPT_LIST_LIMITS.maxClaimLimit },
      concurrency,
    ),
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
    { min: 1, max: MAX_WORKER_TIMER_MS },
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
  const liveTtlMs = optionalInt(
    'options.liveTtlMs',
    o.liveTtlMs,
    { min: 30, max: MAX_DELAY_MS },
    DEFAULT_WORKER_LIVE_TTL_MS,
  );
  const heartbeatMs = Math.max(10, Math.floor(leaseMs / 3));
  const timeoutMs = optionalInt(
    'options.timeoutMs',
    o.timeoutMs,
    { min: 1, max: MAX_WORKER_TIMER_MS },
    0,
  );
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
    batchSize,
    prefetch,
    leaseMs,
    heartbeatMs,
    pollIntervalMs,
    maxAttempts: maxAttempts === 0 ? undefined : maxAttempts,
    retryDelay,
    timeoutMs: timeoutMs === 0 ? undefined : timeoutMs,
    stopTimeoutMs: optionalInt(
      'options.stopTimeoutMs',
      o.stopTimeoutMs,
      { min: 0, max: MAX_WORKER_TIMER_MS },
      DEFAULT_WORKER_STOP_TIMEOUT_MS,
    ),
    handleSignals: checkBoolean('options.handleSignals', o.handleSignals, false),
    liveTtlMs,
    // Not tied to leaseMs: a short lease needs frequent extends, not frequent live rows.
    liveIntervalMs: Math.max(10, Math.min(MAX_WORKER_LIVE_INTERVAL_MS, Math.floor(liveTtlMs / 3))),
    listener: o.listener,
    connection: o.connection,
    logger: resolveLogger(o.logger),
    limits: o.limits === undefined ? undefined : checkLimits(o.limits, 'options.limits'),
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

/** What a handler gets for `claim`. */
export function workItem(list: string, claim: Claim): WorkItem {
  return {
    list,
    item: claim.item,
    attempts: claim.attempts,
    token: claim.token,
    leaseUntil: claim.leaseUntil,
  };
}
