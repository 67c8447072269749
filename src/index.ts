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
