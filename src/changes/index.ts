// The changes block's public face: change capture and change consumers.
// Other blocks, the server and the CLI import this file, never the files beside it.
export { ALL_OPERATIONS } from './capture-ddl.js';
export type { ChangeOperation, TableRef } from './capture-ddl.js';
export { ChangeCapture } from './change-capture.js';
export type {
  ChangeCaptureOptions,
  ChangeGroupMode,
  ChangeGroupStatus,
  ChangeTxOptions,
  CreateGroupOptions,
  DeadLetter,
  DeadLetterListOptions,
  ReplayOptions,
  StartFrom,
  TrackOptions,
  TrackedTable,
} from './change-capture.js';
export type { PruneOptions, PruneResult } from './change-retention.js';
export { ChangeConsumer, consume } from './change-consumer.js';
export type { ChangeConsumerEvents, ChangeConsumerMetrics } from './change-consumer.js';
export type { BatchContext, Change, ChangeHandler } from './change.js';
// Renamed in src/index.ts: the rate limiter exports a ConsumeOptions too.
export type { ConsumeOptions } from './change-consumer-options.js';
