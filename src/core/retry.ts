import { coerceError, DatabaseError, ValidationError, type PgcoordError } from './errors.js';
import type { RetryReason } from './retryable.js';
import { checkInt, describe } from './validate.js';

/**
 * The one backoff and the one retry loop. Whether a failure is worth another try is decided by
 * `err.retryable` (set by {@link coerceError} from the table in retryable.ts), never here.
 */

/**
 * How a delay is spread out so that peers failing together do not retry together:
 * - `full`: anywhere from 0 to the exponential delay (AWS's "full jitter"; the least contention),
 * - `equal`: half the exponential delay plus a random half (never retries at once),
 * - `none`: exactly the exponential delay (for tests and single clients).
 */
export type Jitter = 'full' | 'equal' | 'none';

/** The jitter modes, in the order of {@link Jitter}. */
export const JITTERS: readonly Jitter[] = Object.freeze(['full', 'equal', 'none'] as const);

/** Options of {@link backoffDelayMs}. */
export interface BackoffOptions {
  /** Delay before the first retry, before jitter, in ms. Doubles per attempt. */
  baseMs: number;
  /** Cap of the delay before jitter, in ms. */
  maxMs: number;
  /** How the delay is spread. Default `'full'`. */
  jitter?: Jitter;
  /** Source of randomness in [0, 1). Default `Math.random` (tests pass a fixed one). */
  random?: () => number;
}

/**
 * Delay before retry number `attempt` (1 for the first retry): `baseMs * 2^(attempt-1)`, capped
 * at `maxMs`, then jittered. Whole milliseconds.
 *
 * @example
 * backoffDelayMs(3, { baseMs: 100, maxMs: 5_000, jitter: 'equal' }); // 200 .. 400
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions): number {
  const { baseMs, maxMs, jitter = 'full', random = Math.random } = options;
  // 2^52 already passes any cap; a bigger exponent would only make Infinity.
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 52));
  switch (jitter) {
    case 'none':
      return Math.round(exponential);
    case 'equal':
      return Math.round(exponential / 2 + random() * (exponential / 2));
    default:
      return Math.round(random() * exponential);
  }
}

/** Options of {@link withRetry}. */
export interface RetryOptions {
  /** Retries after the first attempt. Default 3; 0 runs `fn` once. Range 0 .. 1000. */
  retries?: number;
  /** Delay before the first retry, before jitter, in ms. Default 100. Range 0 .. 1 hour. */
  baseMs?: number;
  /** Cap of the delay, before jitter, in ms. Default 5000. Range `baseMs` .. 1 hour. */
  maxMs?: number;
  /** How delays are spread. Default `'full'`. */
  jitter?: Jitter;
  /**
   * Stops retrying when aborted: a wait in progress ends and the last failure is thrown; if it is
   * aborted before the first attempt, `fn` is not called and the abort reason is thrown.
   */
  signal?: AbortSignal;
  /**
   * Which retryable failures to retry. Default both: `connection` (a broken link, a server
   * shutting down, a timeout) and `conflict` (a serialization failure or deadlock). A statement
   * that is safe to run again after a rollback but not after a link broke mid-statement (a claim)
   * retries only `['conflict']`.
   */
  retryOn?: readonly RetryReason[];
  /** Called before each wait (for events and logs). */
  onRetry?: (info: { attempt: number; delayMs: number; error: PgcoordError }) => void;
}

/** Default retries of {@link withRetry}. */
export const DEFAULT_RETRIES = 3;
/** Default first delay of {@link withRetry}, in ms. */
export const DEFAULT_RETRY_BASE_MS = 100;
/** Default delay cap of {@link withRetry}, in ms. */
export const DEFAULT_RETRY_MAX_MS = 5_000;
const MAX_RETRY_DELAY_MS = 3_600_000;

/**
 * Runs `fn`, and runs it again after a backoff while it fails with a retryable error (a broken
 * connection, a server shutting down, a serialization failure or deadlock: `err.retryable`,
 * narrowed by `retryOn`).
 * Any other failure, or the last one, is thrown as a {@link PgcoordError}.
 *
 * Only for idempotent work: a connection that breaks mid-statement leaves unknown whether the
 * statement committed, so `fn` must be safe to run twice (a read, an upsert to a fixed value, a
 * compare-and-set, a whole transaction). Never wrap a non-idempotent write (an increment, an
 * insert that may duplicate) in it.
 *
 * @example
 * const value = await withRetry(() => kv.get('config'), { retries: 5 });
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  if (typeof fn !== 'function') {
    throw new ValidationError('fn', `must be a function, got ${describe(fn)}`);
  }
  const policy = resolveRetryOptions(options);
  const { signal } = options;
  signal?.throwIfAborted();
  for (let attempt = 1; ; attempt++) {
    let error: PgcoordError;
    try {
      return await fn(attempt);
    } catch (err) {
      error = coerceError(err);
    }
    const reason = reasonOf(error);
    if (
      !reason ||
      !policy.retryOn.includes(reason) ||
      attempt > policy.retries ||
      signal?.aborted
    ) {
      throw error;
    }
    const delayMs = backoffDelayMs(attempt, policy);
    options.onRetry?.({ attempt, delayMs, error });
    if (!(await sleep(delayMs, signal))) throw error;
  }
}

/**
 * Why a pgcoord error may succeed when tried again, or undefined when it may not: a refusal the
 * server rolled back (a {@link DatabaseError} marked retryable) is a `conflict`; any other
 * retryable error (a {@link ConnectionError}, a {@link TimeoutError}) is about the link.
 */
export function reasonOf(error: PgcoordError): RetryReason | undefined {
  if (!error.retryable) return undefined;
  return error instanceof DatabaseError ? 'conflict' : 'connection';
}

const RETRY_REASONS: readonly RetryReason[] = Object.freeze(['connection', 'conflict'] as const);

/** The checked options of {@link withRetry}, defaults applied. */
function resolveRetryOptions(options: RetryOptions): Required<Omit<BackoffOptions, 'random'>> & {
  retries: number;
  retryOn: readonly RetryReason[];
} {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('options', `must be an object, got ${describe(options)}`);
  }
  const retries =
    options.retries === undefined
      ? DEFAULT_RETRIES
      : checkInt('options.retries', options.retries, { min: 0, max: 1000 });
  const baseMs =
    options.baseMs === undefined
      ? DEFAULT_RETRY_BASE_MS
      : checkInt('options.baseMs', options.baseMs, { min: 0, max: MAX_RETRY_DELAY_MS });
  const maxMs =
    options.maxMs === undefined
      ? Math.max(baseMs, DEFAULT_RETRY_MAX_MS)
      : checkInt('options.maxMs', options.maxMs, { min: baseMs, max: MAX_RETRY_DELAY_MS });
  const jitter = options.jitter ?? 'full';
  if (!JITTERS.includes(jitter)) {
    throw new ValidationError(
      'options.jitter',
      `must be one of ${JITTERS.join(', ')}, got ${describe(jitter)}`,
    );
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new ValidationError(
      'options.signal',
      `must be an AbortSignal, got ${describe(options.signal)}`,
    );
  }
  if (options.onRetry !== undefined && typeof options.onRetry !== 'function') {
    throw new ValidationError(
      'options.onRetry',
      `must be a function, got ${describe(options.onRetry)}`,
    );
  }
  const retryOn = options.retryOn ?? RETRY_REASONS;
  if (!Array.isArray(retryOn) || retryOn.some((r) => !RETRY_REASONS.includes(r))) {
    throw new ValidationError(
      'options.retryOn',
      `must be an array of ${RETRY_REASONS.join(', ')}, got ${describe(retryOn)}`,
    );
  }
  return { retries, baseMs, maxMs, jitter, retryOn };
}

/**
 * Waits `ms`, or less when `signal` aborts. Resolves true after the full wait, false when
 * aborted. The timer holds the process open, as the work waiting on it would.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
