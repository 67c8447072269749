// The parameters of an insert (attempt-list-sql.ts's insertSql): which statement pair carries a
// checked batch's keys and schedules, and its values chunk by chunk.
import type { AttemptListSql } from './attempt-list-sql.js';
import { isPlain, type InsertRows, type Schedule } from './attempt-list-schedule.js';

/** The cheapest insert statements that carry `rows`, and their parameters for items `from` to `to`. */
export function insertParams(
  sql: Pick<AttemptListSql, 'insert' | 'insertQuiet' | 'insertEach' | 'insertScheduled'>,
  list: string,
  rows: InsertRows,
): {
  pair: { insert: string; insertQuiet: string };
  values: (from: number, to: number) => unknown[];
} {
  const { items, keys, schedule, schedules } = rows;
  // $1 list, $2 items, $3 keys (or NULL), $4 no key rule: see insertSql in attempt-list-sql.ts.
  const keyed = (a: number, b: number) => [
    list,
    slice(items, a, b),
    keys === undefined ? null : slice(keys, a, b),
    null,
  ];
  let pair: { insert: string; insertQuiet: string } = sql;
  let values: (from: number, to: number) => unknown[];
  if (schedules !== undefined) {
    pair = sql.insertEach;
    values = (a, b) => [...keyed(a, b), ...eachValues(schedules, a, b)];
  } else if (isPlain(schedule)) {
    values = keyed;
  } else {
    pair = sql.insertScheduled;
    values = (a, b) => [...keyed(a, b), schedule.runAt, schedule.delayMs, schedule.priority];
  }
  return { pair, values };
}

/** Items `from` to `to` of `items` (the array itself when that is all of it). */
export function slice<T>(items: T[], from: number, to: number): T[] {
  return from === 0 && to === items.length ? items : items.slice(from, to);
}

/** The schedule parameters ($5 to $7) of the per-item insert (sql.insertEach), items `from` to `to`. */
export function eachValues(schedules: Schedule[], from: number, to: number): unknown[] {
  const n = to - from;
  const runAt = new Array<string | null>(n);
  const delayMs = new Array<number>(n);
  const priority = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const s = schedules[from + i]!;
    runAt[i] = s.runAt;
    delayMs[i] = s.delayMs;
    priority[i] = s.priority;
  }
  return [runAt, delayMs, priority];
}

/** Rows a write touched: its `n` when it counts them itself (inserts, requeues), else rowCount. */
export function affected(result: {
  rows: Array<{ n?: unknown }>;
  rowCount: number | null;
}): number {
  const n = result.rows[0]?.n;
  return typeof n === 'number' ? n : (result.rowCount ?? 0);
}
