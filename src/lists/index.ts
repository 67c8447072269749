// The lists block's public face: attempt lists.
// Other blocks, the server and the CLI import this file, never the files beside it.
export { AttemptList } from './attempt-list.js';
export type { ImportOptions, ImportResult } from './attempt-list-import.js';
export { ATTEMPT_LIST_LIMITS } from './attempt-list-limits.js';
export type { InsertItem, ScheduleOptions } from './attempt-list-schedule.js';
export type { LiveWorker } from './live-workers.js';
export type { KeyedItem } from './attempt-list-limits.js';
export {
  DEFAULT_KEY_RATE_ALGORITHM,
  MAX_KEY_REGEX_BYTES,
  MAX_KEY_WEIGHT,
  MAX_LIST_CONCURRENCY,
  checkLimits,
  parseKeyRate,
} from './attempt-list-settings.js';
export type { KeyRate, KeyStats, ListLimits, StoredListLimits } from './attempt-list-settings.js';
export type {
  AttemptListEvents,
  AttemptListOptions,
  Claim,
  ClaimOptions,
  ClaimRef,
  CompleteAndClaimOptions,
  CompleteAndClaimResult,
  ExtendResult,
  FailOptions,
  FailResult,
  InsertOptions,
  ListEntry,
  ListStats,
  PageOptions,
  SettleOptions,
  SettleResult,
  WriteOptions,
} from './attempt-list-types.js';
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
  resolveWorkerOptions,
  workChannel,
} from './worker-options.js';
export type {
  ResolvedWorkerOptions,
  WorkContext,
  WorkHandler,
  WorkItem,
  WorkerOptions,
} from './worker-options.js';
export { Worker } from './worker.js';
export type { WorkerEvents, WorkerMetrics } from './worker.js';
