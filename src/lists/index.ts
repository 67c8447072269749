// The lists block's public face: attempt lists.
// Other blocks, the server and the CLI import this file, never the files beside it.
export { AttemptList } from './attempt-list.js';
export type { ImportOptions, ImportResult } from './attempt-list-import.js';
export { ATTEMPT_LIST_LIMITS } from './attempt-list-limits.js';
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
  ListEntry,
  ListStats,
  PageOptions,
  SettleOptions,
  SettleResult,
  WriteOptions,
} from './attempt-list-types.js';
