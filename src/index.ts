// Every public export of pgcoord, by name.
export type { Queryable, ConnectableQueryable } from './db/queryable.js';
export { withTransaction } from './db/queryable.js';
export {
  PgcoordError,
  ValidationError,
  ConnectionError,
  DatabaseError,
  NotFoundError,
  ConflictError,
  StaleTokenError,
  TimeoutError,
  UnsupportedError,
  MigrationError,
  DatabaseNewerError,
  ClosedError,
  coerceError,
  isConnectionSqlState,
} from './db/errors.js';
export type { ErrorCode } from './db/errors.js';
export { migrate, loadMigrations, latestMigrationId, renderMigration } from './db/migrator.js';
export type { Migration, MigrateOptions, MigrateResult } from './db/migrator.js';
export { quoteIdent, DEFAULT_SCHEMA } from './db/identifier.js';
export { resolveConnectionConfig, createPool, redactConnectionString } from './db/connection.js';
export type { ConnectionInput } from './db/connection.js';
export { Listener } from './listener.js';
export type {
  ListenerOptions,
  ListenerEvents,
  ListenerLogger,
  Notification,
  NotificationHandler,
  HandleOptions,
  IterateOptions,
  OverflowPolicy,
} from './listener.js';
export {
  notify,
  Notifier,
  purgeListenerPayloads,
  MAX_CHANNEL_BYTES,
  MAX_PAYLOAD_BYTES,
} from './notify.js';
export type { NotifierOptions, NotifyOptions, JsonValue } from './notify.js';
export { AttemptList } from './attempt-list.js';
export type {
  AttemptListOptions,
  WriteOptions,
  ListEntry,
  PageOptions,
  Claim,
  ClaimRef,
  ClaimOptions,
  SettleResult,
  SettleOptions,
  FailResult,
  FailOptions,
  ExtendResult,
  CompleteAndClaimOptions,
  CompleteAndClaimResult,
} from './attempt-list.js';
export { ATTEMPT_LIST_LIMITS } from './attempt-list-limits.js';
export type { ImportOptions, ImportResult } from './attempt-list-import.js';
