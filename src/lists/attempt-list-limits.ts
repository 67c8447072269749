import { ValidationError } from '../core/index.js';
import type { ClaimRef } from './attempt-list-types.js';
import { NO_CTID } from './attempt-list-sql.js';
import { IssuedClaim } from './issued-claim.js';
import { checkText, checkTextArray, describe, MAX_BIGINT, textProblem } from '../core/index.js';

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
  /**
   * Longest key, in UTF-8 bytes: as long as an item, so a key a regex derives from an item always
   * fits. (list, key) stays well inside a B-tree entry. The empty key is reserved ("no key").
   */
  maxKeyBytes: 2048,
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
  /** Longest `delayMs` of an insert: one year, in milliseconds (later times take `runAt`). */
  maxDelayMs: 365 * 24 * 3600 * 1000,
  /** Lowest priority of an item (priorities are a 16-bit integer; default 0). */
  minPriority: -32_768,
  /** Highest priority of an item. */
  maxPriority: 32_767,
});

/** Items per statement inside one batch call: big enough to amortize round trips, small enough to keep each bind message a few MB. */
export const CHUNK_ITEMS = 20_000;

const TOKEN_PATTERN = /^[0-9]{1,19}$/;
/** Tokens come from a bigint sequence; a longer or larger one cannot be current. */
const MAX_TOKEN = String(MAX_BIGINT);
/** Digits past the bigint range: only a 19-digit string can be, and then it compares as text. */
const tooBig = (digits: string) => digits.length === 19 && digits > MAX_TOKEN;

const ITEM_RULE = { maxBytes: ATTEMPT_LIST_LIMITS.maxItemBytes };

/** A list name: non-empty text of at most {@link ATTEMPT_LIST_LIMITS}.maxListBytes. */
export function checkList(value: unknown, argument = 'list'): string {
  return checkText(argument, value, { maxBytes: ATTEMPT_LIST_LIMITS.maxListBytes });
}

/** An item: non-empty text of at most {@link ATTEMPT_LIST_LIMITS}.maxItemBytes. */
export function checkItem(value: unknown, argument = 'item'): string {
  return checkText(argument, value, { maxBytes: ATTEMPT_LIST_LIMITS.maxItemBytes });
}

/** A batch of items, each as {@link checkItem}, at most {@link ATTEMPT_LIST_LIMITS}.maxBatchItems. */
export function checkItems(value: unknown, argument = 'items'): string[] {
  return checkTextArray(argument, value, {
    maxBytes: ATTEMPT_LIST_LIMITS.maxItemBytes,
    maxLength: ATTEMPT_LIST_LIMITS.maxBatchItems,
  });
}

/** An item to insert with its key ({@link AttemptList.insertBatch}). */
export interface KeyedItem {
  /** The item. */
  item: string;
  /** Its key (a host, a tenant): 1 to 2,048 bytes. Default: the list's key rule, else none. */
  key?: string;
}

/**
 * Claims as parallel lists, one entry per distinct item: the items as an array, their tokens and
 * ctid hints each as one space-separated text (see `packed` in attempt-list-sql.ts).
 */
export function checkClaims(
  value: unknown,
  argument = 'claims',
): { items: string[]; tokens: string; ctids: string } {
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
    // Argument names are built only for an error: a busy worker's loop checks 100s per call.
    const problem = textProblem(c.item, ITEM_RULE);
    if (problem !== undefined) throw new ValidationError(`${argument}[${i}].item`, problem);
    const item = c.item as string;
    if (typeof c.token !== 'string' || !TOKEN_PATTERN.test(c.token) || tooBig(c.token)) {
      throw new ValidationError(
        `${argument}[${i}].token`,
        `must be a claim token (a decimal string of at most 19 digits, at most ${MAX_TOKEN}), got ${describe(c.token)}`,
      );
    }
    // The same item twice: the last token wins, the item counts once.
    byItem.set(item, c);
  }
  const items: string[] = [];
  const tokens: string[] = [];
  const ctids: string[] = [];
  for (const [item, c] of byItem) {
    items.push(item);
    tokens.push(c.token as string);
    ctids.push(IssuedClaim.hintOf(c) ?? NO_CTID);
  }
  return { items, tokens: tokens.join(' '), ctids: ctids.join(' ') };
}
