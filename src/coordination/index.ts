// The coordination block's public face: key-value, rate limits, leases and leader election.
// Other blocks, the server and the CLI import this file, never the files beside it.
export {
  KvStore,
  MAX_KV_BATCH,
  MAX_KV_KEY_BYTES,
  MAX_KV_VALUE_BYTES,
  MAX_TTL_MS,
} from './kv-store.js';
export type {
  KvEntry,
  KvReadOptions,
  KvStoreEvents,
  KvStoreOptions,
  KvWriteOptions,
} from './kv-store.js';
export { LeaderElection } from './leader-election.js';
export type { LeaderElectionEvents, LeaderElectionOptions } from './leader-election.js';
export { LeaseManager, MAX_LEASE_NAME_BYTES, MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from './lease.js';
export type {
  AcquireOptions,
  Lease,
  LeaseHandle,
  LeaseManagerOptions,
  WithLeaseOptions,
} from './lease.js';
export { ALGORITHM_CODE, RATE_LIMIT_ALGORITHMS } from './rate-limit-algorithms.js';
export type { RateLimitAlgorithm } from './rate-limit-algorithms.js';
export {
  MAX_LIMITER_NAME_BYTES,
  MAX_PERIOD_MS,
  MAX_QUOTAS,
  MAX_RATE_LIMIT_KEY_BYTES,
  MAX_RATE_LIMIT_UNITS,
  RateLimiter,
} from './rate-limiter.js';
export type {
  ConsumeOptions,
  RateLimitDecision,
  RateLimitQuota,
  RateLimiterOptions,
} from './rate-limiter.js';
