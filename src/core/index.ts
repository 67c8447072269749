// The core block's public face: what every block stands on: errors, validation, queryables and transactions, the migrator, identifiers, connections.
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
export { DEFAULT_SCHEMA, checkSchemaName, quoteIdent } from './identifier.js';
export {
  ensureMigrated,
  latestMigrationId,
  loadMigrations,
  migrate,
  renderMigration,
} from './migrator.js';
export type { MigrateOptions, MigrateResult, Migration } from './migrator.js';
export { checkPreparedStatements, preparedQuery } from './prepared-query.js';
export { isConnectable, withClient, withTransaction } from './queryable.js';
export type { ConnectableQueryable, Queryable } from './queryable.js';
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
