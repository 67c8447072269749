// The counters and events of a Worker (worker.ts re-exports them).
import type { WorkItem } from './worker-options.js';

/** Counters of a {@link Worker} since it was made. */
export interface WorkerMetrics {
  /** Items handed to this worker by claims. */
  claimed: number;
  /** Handlers started. */
  started: number;
  /** Items completed. */
  completed: number;
  /** Failures recorded (retried later), dead ones included. */
  failed: number;
  /** Items retired to dead. */
  dead: number;
  /** Handlers aborted by their timeout. */
  timedOut: number;
  /** Items whose lease was lost while their handler ran. */
  leaseLost: number;
  /** Items given back without an attempt counted (on stop). */
  released: number;
  /**
   * Completions refused because the item's token was no longer current: its lease was lost
   * before the completion arrived (someone else may hold it now), or an earlier send was applied
   * but its reply was lost. Never applied.
   */
  staleCompletions: number;
  /** Claim round trips (each also carried the completions so far). */
  claims: number;
  /** Handlers running now. */
  inFlight: number;
}

/** Events of a {@link Worker}. */
export interface WorkerEvents {
  'item:start': [WorkItem];
  'item:complete': [WorkItem];
  'item:fail': [WorkItem & { error: unknown; retryDelayMs: number }];
  'item:dead': [WorkItem & { error: unknown }];
  'lease:lost': [WorkItem];
  /** Nothing claimable and nothing in flight: the worker waits for a notification or the poll. */
  idle: [];
  /**
   * The worker's live row ({@link AttemptList.workers}) was written; `pruned` rows of workers
   * that died without stopping were deleted with it.
   */
  live: [{ pruned: number }];
  stopped: [];
  error: [Error];
}
