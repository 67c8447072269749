import { ValidationError } from './db/errors.js';
import type { Queryable } from './db/queryable.js';
import { checkText, checkTextArray, describe } from './validate.js';

/**
 * Documented limits of attempt lists. Every one is checked before any SQL runs; breaking one
 * throws a {@link ValidationError} naming the argument and the limit.
 */
export const ATTEMPT_LIST_LIMITS = Object.freeze({
  /** Longest list name, in UTF-8 bytes. */
  maxListBytes: 255,
  /**
   * Longest item, in UTF-8 bytes. Keeps (list, item) well inside a B-tree entry (~2,700 bytes),
   * so no item can make an index insert fail.
   */
  maxItemBytes: 2048,
  /** Most items in one insertBatch / incrementBatch / deleteBatch / requeue call. */
  maxBatchItems: 1_000_000,
  /** Most entries one getBatch / dead page returns. */
  maxPageCount: 100_000,
  /** Most items one claim hands out. */
  maxClaimLimit: 10_000,
  /** Most claims in one complete / fail / release / extend call. */
  maxClaimsPerCall: 10_000,
  /** Longest lease and longest retry delay: 30 days, in milliseconds. */
  maxLeaseMs: 30 * 24 * 3600 * 1000,
  /** Largest maxAttempts (attempts are a 32-bit integer). */
  maxAttempts: 2_147_483_647,
});

/** Items per statement inside one batch call: big enough to amortize round trips, small enough to keep each bind message a few MB. */
export const CHUNK_ITEMS = 20_000;

/** A claim handle: what complete / fail / release / extend need to prove the caller holds the item. */
export interface ClaimRef {
  item: string;
  /** The token of the claim that handed out the item (a decimal bigint string). */
  token: string;
}

const TOKEN_PATTERN = /^[0-9]{1,19}$/;

export function checkList(value: unknown, argument = 'list'): string {
  return checkText(argument, value, { maxBytes: ATTEMPT_LIST_LIMITS.maxListBytes });
}

export function checkItem(value: unknown, argument = 'item'): string {
  return checkText(argument, value, { maxBytes: ATTEMPT_LIST_LIMITS.maxItemBytes });
}

export function checkItems(value: unknown, argument = 'items'): string[] {
  return checkTextArray(argument, value, {
    maxBytes: ATTEMPT_LIST_LIMITS.maxItemBytes,
    maxLength: ATTEMPT_LIST_LIMITS.maxBatchItems,
  });
}

/**
 * Where each claim's row version is (its ctid), keyed by the claim object pgcoord handed out or
 * extended. A hint only, never part of the API: complete, completeAndClaim, release, fail and
 * extend pass it back so the server reaches the row without a primary-key probe (migration 0008
 * for completions), and an extend points it at the row's new version. A claim without one
 * (copied, rebuilt from JSON), or whose row moved since, takes the primary-key path.
 */
export const claimCtids = new WeakMap<object, string>();

/** Claims as parallel arrays (items, tokens, ctid hints), one entry per distinct item. */
export function checkClaims(
  value: unknown,
  argument = 'claims',
): { items: string[]; tokens: string[]; ctids: Array<string | null> } {
  if (!Array.isArray(value)) {
    throw new ValidationError(argument, `must be an array of claims, got ${describe(value)}`);
  }
  if (value.length > ATTEMPT_LIST_LIMITS.maxClaimsPerCall) {
    throw new ValidationError(
      argument,
      `has ${value.length} entries; the limit is ${ATTEMPT_LIST_LIMITS.maxClaimsPerCall} per call`,
    );
  }
  const byItem = new Map<string, Partial<ClaimRef>>();
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as Partial<ClaimRef> | null;
    if (typeof c !== 'object' || c === null) {
      throw new ValidationError(
        `${argument}[${i}]`,
        `must be a claim {item, token}, got ${describe(c)}`,
      );
    }
    const item = checkItem(c.item, `${argument}[${i}].item`);
    if (typeof c.token !== 'string' || !TOKEN_PATTERN.test(c.token)) {
      throw new ValidationError(
        `${argument}[${i}].token`,
        `must be a claim token (a decimal string of at most 19 digits), got ${describe(c.token)}`,
      );
    }
    // The same item twice: the last token wins, the item counts once.
    byItem.set(item, c);
  }
  const items: string[] = [];
  const tokens: string[] = [];
  const ctids: Array<string | null> = [];
  for (const [item, c] of byItem) {
    items.push(item);
    tokens.push(c.token as string);
    ctids.push(claimCtids.get(c) ?? null);
  }
  return { items, tokens, ctids };
}

/** The optional caller transaction of a write. */
export function checkTx(value: unknown, argument = 'options.tx'): Queryable | undefined {
  if (value === undefined) return undefined;
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as Partial<Queryable>).query !== 'function'
  ) {
    throw new ValidationError(
      argument,
      `must be a Queryable (a pg client or pool), got ${describe(value)}`,
    );
  }
  return value as Queryable;
}
