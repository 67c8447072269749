import { ValidationError } from './errors.js';
import type { ConnectableQueryable, Queryable } from './queryable.js';
import { checkOptions, describe } from './validate.js';

/**
 * The options pattern every block follows (as Kysely's `*-config.ts`):
 *
 * - an exported `XOptions` interface, every field optional where a default exists, each with a
 *   doc comment giving its unit, default and range;
 * - the defaults as named, exported constants (`DEFAULT_X_TTL_MS`), never literals in the code,
 *   so a second block with the same limits imports them;
 * - one `resolveXOptions(options)` that checks every field with the checks of this file and of
 *   validate.ts (each throws a {@link ValidationError} naming the option and the limit, before any
 *   SQL) and returns the result through {@link frozen}, so nothing changes it later.
 *
 * @example
 * export const DEFAULT_REAP_INTERVAL_MS = 60_000;
 * export function resolveReaperOptions(options: ReaperOptions | undefined): Readonly<Resolved> {
 *   const o = checkOptions('options', options);
 *   return frozen({
 *     intervalMs: optionalInt('options.intervalMs', o.intervalMs, { min: 10, max: DAY_MS }, DEFAULT_REAP_INTERVAL_MS),
 *     unlogged: checkBoolean('options.unlogged', o.unlogged, false),
 *   });
 * }
 */

/** Freezes a resolved options object (shallowly: nested arrays are frozen too). */
export function frozen<T extends object>(resolved: T): Readonly<T> {
  for (const value of Object.values(resolved)) {
    if (Array.isArray(value)) Object.freeze(value);
  }
  return Object.freeze(resolved);
}

/**
 * The Queryable a block is built on: anything with a `query()` method (a `pg.Pool`, a client, a
 * `ClusterPool`).
 */
export function checkQueryable(argument: string, value: unknown): Queryable {
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as Partial<Queryable>).query !== 'function'
  ) {
    throw new ValidationError(
      argument,
      `must be a Queryable (a pg.Pool, a pg client or a ClusterPool), got ${describe(value)}`,
    );
  }
  return value as Queryable;
}

/** A Queryable that can also hand out dedicated clients (a `pg.Pool` or a `ClusterPool`). */
export function checkConnectable(argument: string, value: unknown): ConnectableQueryable {
  checkQueryable(argument, value);
  if (typeof (value as Partial<ConnectableQueryable>).connect !== 'function') {
    throw new ValidationError(
      argument,
      'must be a pool (a Queryable with connect(), such as pg.Pool or ClusterPool)',
    );
  }
  return value as ConnectableQueryable;
}

/** The optional caller transaction of a call (`options.tx`): undefined, or a Queryable. */
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

/** The `tx` of an options object (checked as an object first): the common first line of a call. */
export function optionsTx(options: { tx?: unknown } | undefined): Queryable | undefined {
  return checkTx(checkOptions('options', options).tx);
}

/** One of `allowed`; undefined yields `fallback` when one is given. */
export function checkOneOf<T extends string>(
  argument: string,
  value: unknown,
  allowed: readonly T[],
  fallback?: T,
): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (!allowed.includes(value as T)) {
    throw new ValidationError(
      argument,
      `must be one of ${allowed.join(', ')}, got ${describe(value)}`,
    );
  }
  return value as T;
}

/** A real boolean (not a truthy string such as `'yes'`); undefined yields `fallback`. */
export function checkBoolean(argument: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new ValidationError(argument, `must be true or false, got ${describe(value)}`);
  }
  return value;
}

/** A function (a handler, a hook); undefined is refused. */
export function checkFunction<F extends (...args: never[]) => unknown>(
  argument: string,
  value: unknown,
): F {
  if (typeof value !== 'function') {
    throw new ValidationError(argument, `must be a function, got ${describe(value)}`);
  }
  return value as F;
}
