// Every public export of pgcoord, by name.
export type { Queryable, ConnectableQueryable } from './core/index.js';
export { withTransaction } from './core/index.js';
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
  InternalError,
  coerceError,
  isConnectionSqlState,
} from './core/index.js';
export { withRetry, backoffDelayMs } from './core/index.js';
export type { Service, ServiceState, LifecycleSignals, TestSignal } from './core/index.js';
export type { Logger, LogEntry, LogLevel, LoggerInput, MessageFirstLogger } from './core/index.js';
export type { RetryOptions, BackoffOptions, Jitter, RetryReason } from './core/index.js';
export type { ErrorCode } from './core/index.js';
export { migrate, loadMigrations, latestMigrationId, renderMigration } from './core/index.js';
export { BREAKING_MARKER, parseMigration } from './core/index.js';
export type { Migration, MigrateOptions, MigrateResult } from './core/index.js';
export { quoteIdent, DEFAULT_SCHEMA } from './core/index.js';
export { resolveConnectionConfig, createPool, redactConnectionString } from './core/index.js';
export type { ConnectionInput } from './core/index.js';
export { ChangeCapture, ALL_OPERATIONS } from './changes/index.js';
export type {
  ChangeOperation,
  TableRef,
  TrackOptions,
  TrackedTable,
  ChangeGroupStatus,
  CreateGroupOptions,
  DeadLetter,
  PruneOptions,
  PruneResult,
  ChangeCaptureOptions,
  ChangeGroupMode,
  ChangeTxOptions,
  DeadLetterListOptions,
  ReplayOptions,
  StartFrom,
} from './changes/index.js';
export { ChangeConsumer, consume } from './changes/index.js';
export type {
  Change,
  BatchContext,
  ChangeHandler,
  // Renamed here: the rate limiter exports a ConsumeOptions too (clash of the kv and changes merges).
  ConsumeOptions as ChangeConsumeOptions,
  ChangeConsumerEvents,
  ChangeConsumerMetrics,
} from './changes/index.js';
export { Listener } from './listen/index.js';
export type {
  ListenerOptions,
  ListenerEvents,
  ListenerLogger,
  Notification,
  NotificationHandler,
  HandleOptions,
  IterateOptions,
  OverflowPolicy,
} from './listen/index.js';
export {
  notify,
  Notifier,
  purgeListenerPayloads,
  MAX_CHANNEL_BYTES,
  MAX_PAYLOAD_BYTES,
} from './listen/index.js';
export type { NotifierOptions, NotifyOptions, JsonValue } from './listen/index.js';
export { AttemptList } from './lists/index.js';
export type {
  AttemptListOptions,
  AttemptListEvents,
  WriteOptions,
  ListEntry,
  ListStats,
  PageOptions,
  Claim,
  ClaimOptions,
  SettleResult,
  SettleOptions,
  FailResult,
  FailOptions,
  ExtendResult,
  CompleteAndClaimOptions,
  CompleteAndClaimResult,
} from './lists/index.js';
export type { ClaimRef } from './lists/index.js';
export { ATTEMPT_LIST_LIMITS } from './lists/index.js';
export {
  DEFAULT_KEY_RATE_ALGORITHM,
  MAX_KEY_REGEX_BYTES,
  MAX_KEY_WEIGHT,
  MAX_LIST_CONCURRENCY,
} from './lists/index.js';
export type { KeyRate, KeyStats, KeyedItem, ListLimits, StoredListLimits } from './lists/index.js';
export type { ImportOptions, ImportResult } from './lists/index.js';
export type { InsertItem, InsertOptions, ScheduleOptions } from './lists/index.js';
export {
  KvStore,
  MAX_KV_KEY_BYTES,
  MAX_KV_VALUE_BYTES,
  MAX_KV_BATCH,
  MAX_TTL_MS,
} from './coordination/index.js';
export type {
  KvStoreOptions,
  KvWriteOptions,
  KvReadOptions,
  KvEntry,
  KvStoreEvents,
} from './coordination/index.js';
export {
  RateLimiter,
  MAX_LIMITER_NAME_BYTES,
  MAX_RATE_LIMIT_KEY_BYTES,
  MAX_QUOTAS,
  MAX_RATE_LIMIT_UNITS,
  MAX_PERIOD_MS,
} from './coordination/index.js';
export type {
  RateLimiterOptions,
  RateLimitQuota,
  ConsumeOptions,
  RateLimitDecision,
} from './coordination/index.js';
export { RATE_LIMIT_ALGORITHMS } from './coordination/index.js';
export type { RateLimitAlgorithm } from './coordination/index.js';
export {
  LeaseManager,
  MAX_LEASE_NAME_BYTES,
  MIN_LEASE_TTL_MS,
  MAX_LEASE_TTL_MS,
} from './coordination/index.js';
export type {
  Lease,
  LeaseHandle,
  LeaseManagerOptions,
  AcquireOptions,
  WithLeaseOptions,
} from './coordination/index.js';
export { LeaderElection } from './coordination/index.js';
export type { LeaderElectionOptions, LeaderElectionEvents } from './coordination/index.js';
export { ClusterPool } from './cluster/index.js';
export type { ClusterPoolEvents, ClusterReader, TopologyChange } from './cluster/index.js';
export type { ClusterPoolOptions, ClusterLogEntry } from './cluster/index.js';
export {
  roundRobinBalancer,
  randomBalancer,
  leastBusyBalancer,
  inOrderBalancer,
  createBalancer,
} from './cluster/index.js';
export type { Balancer, BalancerCandidate, Intent, StrategyName } from './cluster/index.js';
export { parseMultiHostUrl, TARGET_SESSION_ATTRS } from './cluster/index.js';
export type { MultiHostUrl, TargetSessionAttrs, LoadBalanceHosts } from './cluster/index.js';
export { staticSource } from './cluster/index.js';
export { patroniSource } from './cluster/index.js';
export type { PatroniSourceOptions } from './cluster/index.js';
export { picodataSource, PICODATA_PGPROTO_PORT } from './cluster/index.js';
export { yugabyteSource } from './cluster/index.js';
export type { YugabyteSourceOptions } from './cluster/index.js';
export { instanceKey, parseAddress } from './cluster/index.js';
export type {
  HostPort,
  InstanceRole,
  InstanceHealth,
  InstanceView,
  DiscoveredInstance,
  DiscoveryContext,
  TopologySource,
  DiscoverFunction,
} from './cluster/index.js';
export {
  DEFAULT_WORKER_CONCURRENCY,
  DEFAULT_WORKER_LEASE_MS,
  DEFAULT_WORKER_LIVE_TTL_MS,
  DEFAULT_WORKER_MAX_RETRY_DELAY_MS,
  DEFAULT_WORKER_POLL_INTERVAL_MS,
  DEFAULT_WORKER_RETRY_DELAY_MS,
  DEFAULT_WORKER_STOP_TIMEOUT_MS,
  MAX_WORKER_CONCURRENCY,
  MAX_WORKER_LIVE_INTERVAL_MS,
  MAX_WORKER_TIMER_MS,
  PermanentError,
  Worker,
  resolveWorkerOptions,
  workChannel,
} from './lists/index.js';
export type {
  LiveWorker,
  ResolvedWorkerOptions,
  WorkContext,
  WorkHandler,
  WorkItem,
  WorkerEvents,
  WorkerMetrics,
  WorkerOptions,
} from './lists/index.js';
