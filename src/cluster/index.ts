// The cluster block's public face: the cluster pool, its topology sources and balancers.
// Other blocks, the server and the CLI import this file, never the files beside it.
export {
  createBalancer,
  inOrderBalancer,
  leastBusyBalancer,
  randomBalancer,
  roundRobinBalancer,
} from './balancer.js';
export type { Balancer, BalancerCandidate, Intent, StrategyName } from './balancer.js';
export type { ClusterLogEntry, ClusterPoolOptions } from './cluster-options.js';
export { ClusterPool } from './cluster-pool.js';
export type { ClusterPoolEvents, ClusterReader, TopologyChange } from './cluster-pool.js';
export { TARGET_SESSION_ATTRS, parseMultiHostUrl } from './multi-host-url.js';
export type { LoadBalanceHosts, MultiHostUrl, TargetSessionAttrs } from './multi-host-url.js';
export { patroniSource } from './patroni-source.js';
export type { PatroniSourceOptions } from './patroni-source.js';
export { PICODATA_PGPROTO_PORT, picodataSource } from './picodata-source.js';
export { staticSource } from './static-source.js';
export { instanceKey, parseAddress } from './topology.js';
export type {
  DiscoverFunction,
  DiscoveredInstance,
  DiscoveryContext,
  HostPort,
  InstanceHealth,
  InstanceRole,
  InstanceView,
  TopologySource,
} from './topology.js';
export { yugabyteSource } from './yugabyte-source.js';
export type { YugabyteSourceOptions } from './yugabyte-source.js';
