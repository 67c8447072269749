import { coerceError, ValidationError } from './errors.js';
import { describe } from './validate.js';

/**
 * The one logger shape of pgcoord: pino's `(obj, msg)`. A pino logger (or a Fastify
 * `request.log`) is one as it is; so is anything with these four methods.
 *
 * @example
 * import pino from 'pino';
 * const kv = new KvStore(pool, { logger: pino() });
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A level of {@link Logger}. */
export type LogLevel = keyof Logger;

/** The levels, quietest first. */
export const LOG_LEVELS: readonly LogLevel[] = Object.freeze([
  'debug',
  'info',
  'warn',
  'error',
] as const);

/** A logger that drops everything: the default of every block. */
export const noopLogger: Logger = Object.freeze({
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
});

/**
 * The earlier shape of `logger` in KvStore, LeaderElection and ChangeConsumer: message first,
 * fields second. Still accepted there; new code passes a {@link Logger}.
 */
export interface MessageFirstLogger {
  debug?(message: string, fields?: object): void;
  info?(message: string, fields?: object): void;
  warn?(message: string, fields?: object): void;
  error?(message: string, fields?: object): void;
}

/** One log line as a function logger receives it (the earlier shape of the cluster pool's `logger`). */
export interface LogEntry {
  level: LogLevel;
  message: string;
  [field: string]: unknown;
}

/**
 * What a `logger` option accepts: a {@link Logger} (some methods may be missing), a function of
 * a {@link LogEntry}, or, where a block took it before, a {@link MessageFirstLogger}.
 */
export type LoggerInput = Partial<Logger> | MessageFirstLogger | ((entry: LogEntry) => void);

/** Options of {@link resolveLogger}. */
export interface ResolveLoggerOptions {
  /** The option's name in error messages. Default `options.logger`. */
  argument?: string;
  /**
   * How this option read a plain object before the one Logger type: `'message-first'` for the
   * blocks whose option was `{ warn(message, fields) }`. Default `'pino'`.
   */
  objectShape?: 'pino' | 'message-first';
  /** Used when the option is undefined. Default {@link noopLogger}. */
  fallback?: Logger;
}

const resolved = new WeakSet<object>([noopLogger]);
const PINO_SERIALIZERS = Symbol.for('pino.serializers');

/**
 * Turns a `logger` option into a {@link Logger}: the one place the earlier shapes are adapted,
 * so no user of them breaks.
 *
 * - undefined: `fallback` (no-op by default);
 * - a function: called with a {@link LogEntry} `{ level, message, ...fields }` (the cluster
 *   pool's earlier shape);
 * - a pino logger, or a Logger this function returned: used as it is;
 * - another object: a {@link Logger} with missing methods dropped, except where the block's
 *   option was message-first (`objectShape: 'message-first'`): then its methods are called as
 *   `(message, fields)`, as they were. Pass a pino logger there to get `(obj, msg)`.
 *
 * @throws ValidationError when the option is neither an object nor a function.
 */
export function resolveLogger(value: unknown, options: ResolveLoggerOptions = {}): Logger {
  const { argument = 'options.logger', objectShape = 'pino', fallback = noopLogger } = options;
  if (value === undefined) return fallback;
  if (typeof value === 'function') return fromEntryFunction(value as (entry: LogEntry) => void);
  if (typeof value !== 'object' || value === null) {
    throw new ValidationError(
      argument,
      `must be a logger (an object with debug/info/warn/error methods, e.g. pino, or a function of an entry), got ${describe(value)}`,
    );
  }
  for (const level of LOG_LEVELS) {
    const method = (value as Record<string, unknown>)[level];
    if (method !== undefined && typeof method !== 'function') {
      throw new ValidationError(
        `${argument}.${level}`,
        `must be a function, got ${describe(method)}`,
      );
    }
  }
  if (resolved.has(value) || PINO_SERIALIZERS in value) return value as Logger;
  return objectShape === 'message-first'
    ? fromMessageFirst(value as MessageFirstLogger)
    : fromPartial(value as Partial<Logger>);
}

function fromPartial(partial: Partial<Logger>): Logger {
  const bind = (level: LogLevel) => partial[level]?.bind(partial) ?? noopLogger[level];
  return mark({
    debug: bind('debug'),
    info: bind('info'),
    warn: bind('warn'),
    error: bind('error'),
  });
}

function fromMessageFirst(legacy: MessageFirstLogger): Logger {
  const bind = (level: LogLevel) => {
    const method = legacy[level];
    return method === undefined
      ? noopLogger[level]
      : (obj: object, msg?: string) => method.call(legacy, msg ?? '', obj);
  };
  return mark({
    debug: bind('debug'),
    info: bind('info'),
    warn: bind('warn'),
    error: bind('error'),
  });
}

function fromEntryFunction(fn: (entry: LogEntry) => void): Logger {
  const bind =
    (level: LogLevel) =>
    (obj: object, msg?: string): void =>
      fn({ ...obj, level, message: msg ?? '' });
  return mark({
    debug: bind('debug'),
    info: bind('info'),
    warn: bind('warn'),
    error: bind('error'),
  });
}

function mark(logger: Logger): Logger {
  resolved.add(logger);
  return Object.freeze(logger);
}

/**
 * Logs a failure with its context: `{ ...context, err, code }` at `level` (default `error`),
 * `err` the failure as thrown (pino's error serializer shows its stack and cause) and `code` its
 * pgcoord code. A logger that throws is ignored: logging never breaks the work that logs.
 */
export function logError(
  logger: Logger,
  err: unknown,
  message: string,
  context: object = {},
  level: LogLevel = 'error',
): void {
  const e = coerceError(err);
  try {
    logger[level]({ ...context, err: err instanceof Error ? err : e, code: e.code }, message);
  } catch {
    // A broken logger must not turn a logged failure into a thrown one.
  }
}
