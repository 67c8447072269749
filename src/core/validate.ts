import { ValidationError } from './errors.js';

/**
 * Argument checks shared by every block. Each throws a {@link ValidationError} naming the
 * argument and the limit, before any SQL runs.
 */

/** The largest PostgreSQL bigint: sequences (claim tokens, fencing tokens) stay within it. */
export const MAX_BIGINT = 9_223_372_036_854_775_807n;

/** UTF-8 byte length of a string (what PostgreSQL stores and limits); a lone surrogate counts 3. */
export function byteLength(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}

export interface TextRule {
  /** Largest accepted size in UTF-8 bytes. */
  maxBytes: number;
  /** Accept the empty string (default false). */
  allowEmpty?: boolean;
}

/**
 * A string PostgreSQL can store: a real string, no NUL byte (PostgreSQL text cannot hold one),
 * no lone surrogate (it would not survive UTF-8), within `maxBytes`.
 */
export function checkText(argument: string, value: unknown, rule: TextRule): string {
  const problem = textProblem(value, rule);
  if (problem !== undefined) throw new ValidationError(argument, problem);
  return value as string;
}

/**
 * What {@link checkText} would say is wrong with `value`, or undefined when nothing is. The
 * loops over big batches check each element with this and build the element's argument name
 * only for an error.
 */
export function textProblem(value: unknown, rule: TextRule): string | undefined {
  if (typeof value !== 'string') return `must be a string, got ${describe(value)}`;
  if (value.length === 0) return rule.allowEmpty ? undefined : 'must not be empty';
  if (value.includes('\u0000')) return 'must not contain a NUL byte (\\u0000)';
  if (!value.isWellFormed()) return 'must be well-formed Unicode (it has a lone surrogate)';
  // A string of n UTF-16 units takes at most 3n bytes: short ones need no count.
  if (value.length * 3 <= rule.maxBytes) return undefined;
  const bytes = byteLength(value);
  return bytes > rule.maxBytes
    ? `is ${bytes} bytes; the limit is ${rule.maxBytes} bytes`
    : undefined;
}

/** An array of texts, each checked by {@link checkText}; `maxLength` bounds the array. */
export function checkTextArray(
  argument: string,
  value: unknown,
  rule: TextRule & { maxLength?: number },
): string[] {
  if (!Array.isArray(value)) {
    throw new ValidationError(argument, `must be an array of strings, got ${describe(value)}`);
  }
  if (rule.maxLength !== undefined && value.length > rule.maxLength) {
    throw new ValidationError(
      argument,
      `has ${value.length} entries; the limit is ${rule.maxLength} per call`,
    );
  }
  for (let i = 0; i < value.length; i++) {
    const problem = textProblem(value[i], rule);
    if (problem !== undefined) throw new ValidationError(`${argument}[${i}]`, problem);
  }
  return value as string[];
}

export interface IntRule {
  min: number;
  max: number;
}

/** A safe integer within [min, max]. */
export function checkInt(argument: string, value: unknown, rule: IntRule): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new ValidationError(argument, `must be an integer, got ${describe(value)}`);
  }
  if (value < rule.min || value > rule.max) {
    throw new ValidationError(
      argument,
      `must be between ${rule.min} and ${rule.max}, got ${value}`,
    );
  }
  return value;
}

/** Like {@link checkInt}, but `undefined` yields `fallback`. */
export function optionalInt(
  argument: string,
  value: unknown,
  rule: IntRule,
  fallback: number,
): number {
  return value === undefined ? fallback : checkInt(argument, value, rule);
}

/** A plain options object (or undefined, read as `{}`). */
export function checkOptions<T extends object>(argument: string, value: T | undefined): T {
  if (value === undefined) return {} as T;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(argument, `must be an object, got ${describe(value)}`);
  }
  return value;
}

/** Short, safe description of a bad value for error messages (never the whole value). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'undefined':
      return 'undefined';
    default:
      return `a ${typeof value}`;
  }
}

/**
 * `JSON.stringify(value)`, refusing with a ValidationError naming `argument` what JSON cannot
 * carry faithfully instead of throwing a TypeError or losing it: a cycle, a BigInt, NaN or
 * ±Infinity anywhere (JSON.stringify writes them as null), and a value with no JSON form
 * (undefined, a function, a symbol). Object members that are undefined are left out, as
 * JSON.stringify does.
 */
export function toJsonText(argument: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, function check(this: unknown, key: string, v: unknown) {
      const at = key === '' ? '' : ` (at key ${describe(key)})`;
      if (typeof v === 'bigint') {
        throw new ValidationError(
          argument,
          `contains a BigInt${at}, which JSON cannot carry; convert it to a string or a number`,
        );
      }
      if (typeof v === 'number' && !Number.isFinite(v)) {
        throw new ValidationError(
          argument,
          `contains ${String(v)}${at}, which JSON cannot carry (it would be written as null)`,
        );
      }
      return v;
    }) as string | undefined;
  } catch (err) {
    if (err instanceof ValidationError) throw err;
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new ValidationError(argument, `cannot be serialized as JSON: ${why}`);
  }
  if (text === undefined) {
    throw new ValidationError(argument, `must be a JSON value, got ${describe(value)}`);
  }
  return text;
}
