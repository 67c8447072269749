// The changes block's public face: change capture and change consumers.
// Other blocks, the server and the CLI import this file, never the files beside it.
export { ALL_OPERATIONS, ChangeCapture } from './change-capture.js';
export type {
  ChangeGroupStatus,
  ChangeOperation,
  CreateGroupOptions,
  DeadLetter,
  PruneOptions,
  PruneResult,
  TableRef,
  TrackOptions,
  TrackedTable,
} from './change-capture.js';
export { ChangeConsumer, consume } from './change-consumer.js';
export type {
  // Renamed here: the rate limiter exports a ConsumeOptions too (clash of the kv and changes merges).
  ConsumeOptions,
  BatchContext,
  Change,
  ChangeConsumerEvents,
  ChangeHandler,
} from './change-consumer.js';
