// The core block's public face: what every block stands on: errors and the table of retryable
// failures, the one backoff and retry, running a statement, the lifecycle of background objects,
// the Logger, options and validation, queryables and transactions, the migrator, identifiers,
// connections.
// Other blocks, the server and the CLI import this file, never the files beside it.
export { Coalescer } from './coalescer.js';
export { createPool, redactConnectionString, resolveConnectionConfig } from './connection.js';
export type { ConnectionInput } from './connection.js';
export {
  ClosedError,
  ConflictError,
  ConnectionError,
  DatabaseError,
  DatabaseNewerError,
  InternalError,
  MigrationError,
  NotFoundError,
  PgcoordError,
  StaleTokenError,
  TimeoutError,
  UnsupportedError,
  ValidationError,
  coerceError,
  isConnectionSqlState,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export {
  DEFAULT_SCHEMA,
  checkSchemaName,
  dollarQuote,
  quoteIdent,
  quoteLiteral,
} from './identifier.js';
export {
  DEFAULT_RETRIES,
  DEFAULT_RETRY_BASE_MS,
  DEFAULT_RETRY_MAX_MS,
  JITTERS,
  backoffDelayMs,
  reasonOf,
  sleep,
  withRetry,
} from './retry.js';
export type { BackoffOptions, Jitter, RetryOptions } from './retry.js';
export {
  NOT_RETRYABLE_SQLSTATES,
  RETRYABLE_ERRNOS,
  RETRYABLE_MESSAGES,
  RETRYABLE_SQLSTATES,
  RETRYABLE_SQLSTATE_CLASSES,
  isRetryableErrno,
  isSqlState,
  retryReason,
} from './retryable.js';
export type { RetryReason } from './retryable.js';
export {
  BREAKING_MARKER,
  ensureMigrated,
  latestMigrationId,
  loadMigrations,
  migrate,
  parseMigration,
  renderMigration,
} from './migrator.js';
export type { MigrateOptions, MigrateResult, Migration } from './migrator.js';
export { DEFAULT_SIGNAL_TIMEOUT_MS, Lifecycle, TestSignal, reportError } from './lifecycle.js';
export type {
  ErrorEmitter,
  LifecycleHooks,
  LifecycleOptions,
  LifecycleSignals,
  Service,
  ServiceState,
} from './lifecycle.js';
export { LOG_LEVELS, logError, noopLogger, resolveLogger } from './logger.js';
export type {
  LogEntry,
  LogLevel,
  Logger,
  LoggerInput,
  MessageFirstLogger,
  ResolveLoggerOptions,
} from './logger.js';
export {
  checkBoolean,
  checkConnectable,
  checkFunction,
  checkOneOf,
  checkQueryable,
  checkTx,
  frozen,
  optionsTx,
} from './options.js';
export { preparedQuery } from './prepared-query.js';
export { isConnectable, withClient, withTransaction } from './queryable.js';
export type { ConnectableQueryable, Queryable } from './queryable.js';
export { STATEMENT_RETRY, StatementRunner, runStatement } from './statement.js';
export type { RunStatementOptions } from './statement.js';
export {
  MAX_BIGINT,
  byteLength,
  checkInt,
  checkOptions,
  checkText,
  checkTextArray,
  describe,
  optionalInt,
  textProblem,
  toJsonText,
} from './validate.js';
