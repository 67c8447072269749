import { ATTEMPT_LIST_LIMITS, checkItem, checkItems } from './attempt-list-limits.js';
import { checkKey } from './attempt-list-settings.js';
import { checkInt, describe, textProblem, ValidationError } from '../core/index.js';

// Scheduling on insert: when an item first becomes claimable (runAt / delayMs) and in which
// order claims take it (priority). Validated here, before any SQL; stored in list_items.run_at
// and list_items.priority (migration 0012).

/** When an inserted item becomes claimable, and in which order claims take it. */
export interface ScheduleOptions {
  /**
   * Not claimable before this time (compared with the server clock). A time already past makes
   * the item claimable at once, after the ready items of its priority (claims take a priority
   * level's items by this time, never-scheduled ones first). A valid `Date` from year 1 to 9999.
   * Not together with `delayMs`.
   */
  runAt?: Date;
  /**
   * Not claimable before this many milliseconds after the insert, on the server clock. An
   * integer from 0 to {@link ATTEMPT_LIST_LIMITS}.maxDelayMs (one year); 0 (the default) is
   * claimable at once. Not together with `runAt`.
   */
  delayMs?: number;
  /**
   * Claims take higher priorities first, then by due time. An integer from
   * {@link ATTEMPT_LIST_LIMITS}.minPriority to .maxPriority (-32,768 to 32,767). Default 0.
   */
  priority?: number;
}

/**
 * One item of {@link AttemptList.insertBatch} with its own key and schedule (the schedule
 * overriding the batch's).
 */
export interface InsertItem extends ScheduleOptions {
  /** The item: 1 to {@link ATTEMPT_LIST_LIMITS}.maxItemBytes bytes. */
  item: string;
  /**
   * Its key (a host, a tenant: see {@link AttemptList.setLimits}), 1 to
   * {@link ATTEMPT_LIST_LIMITS}.maxKeyBytes bytes. Default: the list's key rule, else none.
   */
  key?: string;
}

/** A checked schedule: `runAt` as an ISO 8601 text (UTC), or null. */
export interface Schedule {
  readonly runAt: string | null;
  readonly delayMs: number;
  readonly priority: number;
}

/** Claimable at once, priority 0: what a plain insert writes. */
export const NO_SCHEDULE: Schedule = Object.freeze({ runAt: null, delayMs: 0, priority: 0 });

/** The fields an insertBatch item object may have. */
const ITEM_FIELDS: ReadonlySet<string> = new Set(['item', 'key', 'runAt', 'delayMs', 'priority']);

/** Year 1 to 9999: what both a JS Date and a PostgreSQL timestamptz write as ISO 8601. */
const MIN_RUN_AT = new Date('0001-01-01T00:00:00.000Z').getTime();
const MAX_RUN_AT = new Date('9999-12-31T23:59:59.999Z').getTime();

/** True when `s` writes what a plain insert writes (the statements without schedule columns). */
export function isPlain(s: Schedule): boolean {
  return s.runAt === null && s.delayMs === 0 && s.priority === 0;
}

/**
 * The schedule of `o` (fields named `prefix.runAt` ... in errors) over `base`: a field given
 * replaces the base's; a time given (runAt or delayMs) replaces the base's time as a whole.
 */
export function checkSchedule(
  o: ScheduleOptions,
  prefix: string,
  base: Schedule = NO_SCHEDULE,
): Schedule {
  const { runAt, delayMs, priority } = o;
  if (runAt === undefined && delayMs === undefined && priority === undefined) return base;
  if (runAt !== undefined && delayMs !== undefined) {
    throw new ValidationError(
      `${prefix}.runAt`,
      `cannot be given together with ${prefix}.delayMs: pick one`,
    );
  }
  return {
    runAt:
      runAt !== undefined
        ? checkRunAt(`${prefix}.runAt`, runAt)
        : delayMs !== undefined
          ? null
          : base.runAt,
    delayMs:
      delayMs !== undefined
        ? checkInt(`${prefix}.delayMs`, delayMs, { min: 0, max: ATTEMPT_LIST_LIMITS.maxDelayMs })
        : runAt !== undefined
          ? 0
          : base.delayMs,
    priority:
      priority === undefined
        ? base.priority
        : checkInt(`${prefix}.priority`, priority, {
            min: ATTEMPT_LIST_LIMITS.minPriority,
            max: ATTEMPT_LIST_LIMITS.maxPriority,
          }),
  };
}

function checkRunAt(argument: string, value: unknown): string {
  if (!(value instanceof Date)) {
    throw new ValidationError(argument, `must be a Date, got ${describe(value)}`);
  }
  const t = value.getTime();
  if (Number.isNaN(t))
    throw new ValidationError(argument, 'must be a valid Date, got Invalid Date');
  if (t < MIN_RUN_AT || t > MAX_RUN_AT) {
    throw new ValidationError(
      argument,
      `must be between 0001-01-01 and 9999-12-31 (UTC), got ${value.toISOString()}`,
    );
  }
  return value.toISOString();
}

/**
 * A checked insertBatch: one schedule for every item, or one per item; and the items' keys
 * (undefined when none was given, else one per item, null where none).
 */
export type InsertRows = { readonly keys?: Array<string | null> | undefined } & (
  | { readonly items: string[]; readonly schedule: Schedule; readonly schedules?: undefined }
  | { readonly items: string[]; readonly schedules: Schedule[]; readonly schedule?: undefined }
);

/**
 * The items of an insertBatch: strings, or {@link InsertItem} objects whose fields override the
 * batch's `defaults`. All strings (the common case) take the plain array check.
 */
export function checkInsertItems(
  value: unknown,
  defaults: Schedule,
  argument = 'items',
): InsertRows {
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    return { items: checkItems(value, argument), schedule: defaults };
  }
  // Length and shape errors, as the plain check words them.
  if (!Array.isArray(value) || value.length > ATTEMPT_LIST_LIMITS.maxBatchItems) {
    checkItems(value, argument);
  }
  const list = value as unknown[];
  const items: string[] = new Array<string>(list.length);
  const schedules: Schedule[] = new Array<Schedule>(list.length);
  const keys: Array<string | null> = new Array<string | null>(list.length);
  // Whether any item has a schedule of its own (else the batch's one schedule serves them all).
  let scheduled = false;
  for (let i = 0; i < list.length; i++) {
    const v = list[i];
    if (typeof v === 'string') {
      const problem = textProblem(v, { maxBytes: ATTEMPT_LIST_LIMITS.maxItemBytes });
      if (problem !== undefined) throw new ValidationError(`${argument}[${i}]`, problem);
      items[i] = v;
      schedules[i] = defaults;
      keys[i] = null;
      continue;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new ValidationError(
        `${argument}[${i}]`,
        `must be a string or an object {item, key?, runAt?, delayMs?, priority?}, got ${describe(v)}`,
      );
    }
    for (const key of Object.keys(v)) {
      if (!ITEM_FIELDS.has(key)) {
        throw new ValidationError(
          `${argument}[${i}]`,
          `has an unknown field ${describe(key)}; the fields are ${[...ITEM_FIELDS].join(', ')}`,
        );
      }
    }
    const o = v as InsertItem;
    items[i] = checkItem(o.item, `${argument}[${i}].item`);
    keys[i] = o.key === undefined ? null : checkKey(o.key, `${argument}[${i}].key`);
    schedules[i] = checkSchedule(o, `${argument}[${i}]`, defaults);
    if (schedules[i] !== defaults) scheduled = true;
  }
  const keyed = keys.some((k) => k !== null) ? keys : undefined;
  return scheduled ? { items, schedules, keys: keyed } : { items, schedule: defaults, keys: keyed };
}
