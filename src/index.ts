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
export { ChangeCapture, ALL_OPERATIONS } from './change-capture.js';
export type {
  ChangeOperation,
  TableRef,
  TrackOptions,
  TrackedTable,
  ChangeGroupStatus,
  DeadLetter,
  PruneOptions,
  PruneResult,
} from './change-capture.js';
export { ChangeConsumer, consume } from './change-consumer.js';
export type {
  Change,
  BatchContext,
  ChangeHandler,
  // Renamed here: the rate limiter exports a ConsumeOptions too (clash of the kv and changes merges).
  ConsumeOptions as ChangeConsumeOptions,
  ChangeConsumerEvents,
} from './change-consumer.js';
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
} from './attempt-list-types.js';
export type { ClaimRef } from './attempt-list-limits.js';
export { ATTEMPT_LIST_LIMITS } from './attempt-list-limits.js';
export type { ImportOptions, ImportResult } from './attempt-list-import.js';
export {
  KvStore,
  MAX_KV_KEY_BYTES,
  MAX_KV_VALUE_BYTES,
  MAX_KV_BATCH,
  MAX_TTL_MS,
} from './kv-store.js';
export type {
  KvStoreOptions,
  KvWriteOptions,
  KvReadOptions,
  KvEntry,
  KvStoreEvents,
} from './kv-store.js';
export {
  RateLimiter,
  MAX_LIMITER_NAME_BYTES,
  MAX_RATE_LIMIT_KEY_BYTES,
  MAX_QUOTAS,
  MAX_RATE_LIMIT_UNITS,
  MAX_PERIOD_MS,
} from './rate-limiter.js';
export type {
  RateLimiterOptions,
  RateLimitQuota,
  ConsumeOptions,
  RateLimitDecision,
} from './rate-limiter.js';
export { RATE_LIMIT_ALGORITHMS } from './rate-limit-algorithms.js';
export type { RateLimitAlgorithm } from './rate-limit-algorithms.js';
export { LeaseManager, MAX_LEASE_NAME_BYTES, MIN_LEASE_TTL_MS, MAX_LEASE_TTL_MS } from './lease.js';
export type { Lease, LeaseManagerOptions, AcquireOptions, WithLeaseOptions } from './lease.js';
export { LeaderElection } from './leader-election.js';
export type { LeaderElectionOptions, LeaderElectionEvents } from './leader-election.js';
export { ClusterPool } from './cluster/cluster-pool.js';
export type { ClusterPoolEvents, ClusterReader, TopologyChange } from './cluster/cluster-pool.js';
export type { ClusterPoolOptions, ClusterLogEntry } from './cluster/cluster-options.js';
export {
  roundRobinBalancer,
  randomBalancer,
  leastBusyBalancer,
  inOrderBalancer,
  createBalancer,
} from './cluster/balancer.js';
export type { Balancer, BalancerCandidate, Intent, StrategyName } from './cluster/balancer.js';
export { parseMultiHostUrl, TARGET_SESSION_ATTRS } from './cluster/multi-host-url.js';
export type {
  MultiHostUrl,
  TargetSessionAttrs,
  LoadBalanceHosts,
} from './cluster/multi-host-url.js';
export { staticSource } from './cluster/static-source.js';
export { patroniSource } from './cluster/patroni-source.js';
export type { PatroniSourceOptions } from './cluster/patroni-source.js';
export { picodataSource, PICODATA_PGPROTO_PORT } from './cluster/picodata-source.js';
export { yugabyteSource } from './cluster/yugabyte-source.js';
export type { YugabyteSourceOptions } from './cluster/yugabyte-source.js';
export { instanceKey, parseAddress } from './cluster/topology.js';
export type {
  HostPort,
  InstanceRole,
  InstanceHealth,
  InstanceView,
  DiscoveredInstance,
  DiscoveryContext,
  TopologySource,
  DiscoverFunction,
} from './cluster/topology.js';
