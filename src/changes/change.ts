import type pg from 'pg';
import type { ChangeOperation } from './capture-ddl.js';
import type { ChangeRow } from './change-position.js';

/** One captured row change, as a handler receives it. */
export interface Change {
  /** Sequence id (decimal string): unique, increasing in write order. */
  id: string;
  /** Id of the writing transaction (xid8, decimal string): groups a transaction's changes. */
  xid: string;
  /** The table's schema. */
  schema: string;
  /** The table's name. */
  table: string;
  /** What the statement did. */
  op: ChangeOperation;
  /** Primary key columns and values; the whole row for a table without a key; null for TRUNCATE. */
  pk: Record<string, unknown> | null;
  /** Row before (UPDATE, DELETE), limited to the tracked columns. */
  old: Record<string, unknown> | null;
  /** Row after (INSERT, UPDATE), limited to the tracked columns. */
  new: Record<string, unknown> | null;
  /** When the writing statement started (server clock). */
  writtenAt: Date;
  /** Commit time, when the server runs with `track_commit_timestamp = on`; otherwise null. */
  committedAt: Date | null;
  /**
   * Stable key for effects outside the database (`<xid>:<id>`): the same on every delivery of
   * this change, so a receiver can drop repeats (delivery outside the database is at-least-once).
   */
  idempotencyKey: string;
}

/** Where a batch comes from, for the handler. */
export interface BatchContext {
  /** The consumer group. */
  group: string;
  /** The lane (0 in ordered mode and for replays). */
  partition: number;
  /** 1 on the first try of this position, more on retries. */
  attempt: number;
  /** True for dead letters being replayed (outside per-key order). */
  replay: boolean;
}

/**
 * Receives a batch and the transaction the group's progress commits in: write your effects with
 * `tx` and they commit together with the position, exactly once. Do not COMMIT or ROLLBACK it;
 * throw to reject the batch (it is retried, then dead-lettered).
 */
export type ChangeHandler = (
  changes: Change[],
  tx: pg.PoolClient,
  context: BatchContext,
) => Promise<void>;

/** A change as the fetch statement returns it, as a handler receives it. */
export function toChange(r: ChangeRow): Change {
  return {
    id: r.id,
    xid: r.xid,
    schema: r.schema_name,
    table: r.table_name,
    op: r.op,
    pk: r.pk,
    old: r.old,
    new: r.new,
    writtenAt: new Date(r.written_at),
    committedAt: r.committed_at === null ? null : new Date(r.committed_at),
    idempotencyKey: `${r.xid}:${r.id}`,
  };
}

/** A change stored as JSON in a dead letter, back with its dates. */
export function changeFromJson(stored: Change): Change {
  return {
    ...stored,
    committedAt: stored.committedAt && new Date(stored.committedAt),
    writtenAt: new Date(stored.writtenAt),
  };
}
