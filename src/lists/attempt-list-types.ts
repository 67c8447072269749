import type { Queryable } from '../core/index.js';
import type { ScheduleOptions } from './attempt-list-schedule.js';

// Options, results and events of AttemptList (attempt-list.ts), and the claim handles it deals in.

/** Options of {@link AttemptList}. */
export interface AttemptListOptions {
  /** Schema holding the `list_items` table. Default `pgcoord`. */
  schema?: string;
  /**
   * Default `maxAttempts` of claim and fail: an item whose attempts reach it becomes dead (not
   * claimed again until requeued). Default: no limit.
   */
  maxAttempts?: number;
}

/**
 * Events of an {@link AttemptList} (node:events). Emitted after the statement that observed them
 * returned; inside a caller's transaction they describe work that may still roll back.
 */
export interface AttemptListEvents {
  /** A claim took over items whose previous lease had expired (their worker died or stalled). */
  'claim:expired': [{ list: string; items: string[] }];
  /** A claim retired items that reached maxAttempts: they are dead until requeued. */
  'claim:dead': [{ list: string; items: string[] }];
}

/**
 * Options of every write and of the reads without paging (getOne, count, stats, lists): run it
 * inside the caller's transaction.
 */
export interface WriteOptions {
  /** A client inside the caller's transaction; the statements run there instead of on the list's queryable. */
  tx?: Queryable;
}

/**
 * Options of {@link AttemptList.insertOne} and {@link AttemptList.insertBatch}: the schedule of
 * the new items (for insertBatch, the batch-wide one its item objects may override) and the
 * caller's transaction.
 */
export interface InsertOptions extends WriteOptions, ScheduleOptions {}

/** Counts of a list's items by state, on the server clock ({@link AttemptList.stats}). */
export interface ListStats {
  /** Every item of the list. */
  total: number;
  /** Claimable now: ready, due after a retry delay, or whose lease expired. */
  claimable: number;
  /** Held under a live lease. */
  leased: number;
  /** Waiting out a retry delay, or scheduled for later (runAt / delayMs). */
  delayed: number;
  /** Reached maxAttempts; not claimed until requeued. */
  dead: number;
}

/** One entry of a page ({@link AttemptList.getBatch}, {@link AttemptList.dead}). */
export interface ListEntry {
  /** The item. */
  item: string;
  /** Its failed attempts so far (an expired lease counts as one). */
  attempts: number;
}

/** Options of a keyset page ({@link AttemptList.getBatch}, {@link AttemptList.dead}). */
export interface PageOptions {
  /** Return items strictly after this one in byte order; it need not exist. Default `''` (from the start). */
  after?: string;
  /** Most entries to return, 1 to 100,000. Default 1,000. */
  count?: number;
  /** Read inside the caller's transaction. */
  tx?: Queryable;
}

/** A claim handle: what complete / fail / release / extend need to prove the caller holds the item. */
export interface ClaimRef {
  /** The claimed item. */
  item: string;
  /** The token of the claim that handed out the item (a decimal bigint string). */
  token: string;
}

/** One item handed to a worker by a claim. */
export interface Claim extends ClaimRef {
  /** Failed attempts so far (an expired lease counts as one). */
  attempts: number;
  /** When the lease ends, on the server clock. After it the item can be claimed by anyone. */
  leaseUntil: Date;
}

/** Options of {@link AttemptList.claim}. */
export interface ClaimOptions extends WriteOptions {
  /** Most items to claim, 1 to 10,000. */
  limit: number;
  /** Lease length in milliseconds, 1 ms to 30 days. */
  leaseMs: number;
  /**
   * Items whose attempts (counting an expired lease as one) reached this are marked dead instead
   * of being handed out. Default: the list's `maxAttempts` (no limit unless set).
   */
  maxAttempts?: number;
  /**
   * On a list with limits ({@link AttemptList.setLimits}): take an item of a key only while
   * fewer than this many of the key's items are leased (fleet-wide). Only tightens the stored
   * per-key concurrency; on a list without limits it is refused. 1 .. 10,000.
   */
  perKeyConcurrency?: number;
  /**
   * On a list with limits: take items only while fewer than this many of the list's items are
   * leased. Only tightens the stored list-wide concurrency; refused on a list without limits.
   */
  concurrency?: number;
}

/**
 * Result of {@link AttemptList.complete} and {@link AttemptList.release}: how many were applied
 * and which items' tokens were stale.
 */
export interface SettleResult {
  /** Claims applied. */
  count: number;
  /** Items whose token is no longer current (lease lost, item deleted): nothing was done to them. */
  stale: string[];
}

/** Result of {@link AttemptList.fail}. */
export interface FailResult extends SettleResult {
  /** Items that reached maxAttempts with this failure and are now dead. */
  dead: string[];
}

/** Result of {@link AttemptList.extend}. */
export interface ExtendResult extends SettleResult {
  /** The new lease end of the extended items, on the server clock (undefined when none were). */
  leaseUntil: Date | undefined;
}

/** Result of {@link AttemptList.completeAndClaim}. */
export interface CompleteAndClaimResult extends SettleResult {
  /** The next claims. */
  claims: Claim[];
  /**
   * On a list with limits, when the claim got fewer than it asked for: milliseconds (server
   * clock) until a key's slot, rate or delayed item may free up, so a worker can sleep until
   * then instead of polling. Undefined when the claim was filled, when nothing is scheduled (an
   * insert or a settlement wakes the list), and on lists without limits.
   */
  nextSlotMs?: number;
}

/**
 * Options of {@link AttemptList.complete}, {@link AttemptList.release}, {@link AttemptList.extend}
 * and {@link AttemptList.fail}.
 */
export interface SettleOptions extends WriteOptions {
  /** Throw {@link StaleTokenError} (and apply nothing) when any token is stale. Default false. */
  strict?: boolean;
}

/** Options of {@link AttemptList.fail}. */
export interface FailOptions extends SettleOptions {
  /** Wait this long (milliseconds, server clock) before the item can be claimed again. Default 0. */
  retryDelayMs?: number;
  /** An item reaching this many attempts becomes dead. Default: the list's `maxAttempts`. */
  maxAttempts?: number;
}

/** Options of {@link AttemptList.completeAndClaim}. */
export interface CompleteAndClaimOptions extends WriteOptions {
  /** Most items to claim next, 0 to 10,000 (0: only complete). */
  limit: number;
  /** Lease length of the next claims, milliseconds. */
  leaseMs: number;
  /** As in {@link ClaimOptions.maxAttempts}. */
  maxAttempts?: number;
  /** As in {@link ClaimOptions.perKeyConcurrency}. */
  perKeyConcurrency?: number;
  /** As in {@link ClaimOptions.concurrency}. */
  concurrency?: number;
}

/** The one row list_complete_and_claim returns (see sql/0001_attempt_lists.sql and 0008). */
export interface ClaimRow {
  completed: string[];
  items: string[];
  /** Where each claimed item's row version is (ctid texts, packed), a hint for its completion. */
  ctids: string;
  /** Attempts of each claimed item (packed). */
  attempts: string;
  token: string;
  lease_until: Date;
  /** Items taken over from an expired lease (their holder never settled them). */
  expired: string[];
  /** Items retired at maxAttempts instead of being claimed. */
  dead: string[];
  /** Milliseconds until the list may have something claimable again (0014), or null. */
  next_ms: number | null;
}
