import { resolveLogger, type Logger } from '../core/index.js';

/**
 * The `logger` option of KvStore and LeaderElection as a {@link Logger}: the earlier message-first
 * `{ warn(message, fields) }` is still called that way (pino and entry functions work too), and
 * `error` goes to `warn`, the level their background failures always had, so a logger that only
 * has `warn` (the option's earlier type) still hears them through the core `reportError`.
 */
export function resolveWarnLogger(value: unknown): Logger {
  const logger = resolveLogger(value, { objectShape: 'message-first' });
  // Methods, not a spread: a pino logger keeps them on its prototype.
  return {
    debug: (obj, msg) => logger.debug(obj, msg),
    info: (obj, msg) => logger.info(obj, msg),
    warn: (obj, msg) => logger.warn(obj, msg),
    error: (obj, msg) => logger.warn(obj, msg),
  };
}
