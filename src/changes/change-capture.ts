import { ConflictError, NotFoundError, ValidationError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent } from '../core/index.js';
import { StatementRunner, withTransaction, type Queryable } from '../core/index.js';
import { checkOneOf, checkQueryable, checkTx, optionsTx } from '../core/index.js';
import { checkInt, checkOptions, checkText, checkTextArray, describe } from '../core/index.js';
import {
  DEFAULT_MAX_RETENTION_MS,
  DEFAULT_PRUNE_MAX_ROWS,
  MAX_RETENTION_MS,
  pruneChanges,
  type PruneOptions,
  type PruneResult,
} from './change-retention.js';
import {
  ALL_OPERATIONS,
  captureDdl,
  checkName,
  checkOperations,
  checkTable,
  describeTable,
  dropDdl,
  MAX_NAME_BYTES,
  type ChangeOperation,
  type TableRef,
} from './capture-ddl.js';

/** How a consumer group delivers: one consumer in id order, or lanes kept in order per key. */
export type ChangeGroupMode = 'ordered' | 'parallel';
/** The group modes. */
export const CHANGE_GROUP_MODES: readonly ChangeGroupMode[] = Object.freeze([
  'ordered',
  'parallel',
] as const);
/** Where a new group starts: after the changes written so far, or at the oldest retained. */
export type StartFrom = 'now' | 'beginning';
/** The start points. */
export const START_FROM: readonly StartFrom[] = Object.freeze(['now', 'beginning'] as const);
/** Lanes of a parallel group when none are given. */
export const DEFAULT_PARTITIONS = 8;
/** Most lanes of a parallel group. */
export const MAX_PARTITIONS = 1024;
/** Longest group name, in bytes. */
export const MAX_GROUP_BYTES = 200;
/** Default of the `limit` of {@link ChangeCapture.deadLetters}. */
export const DEFAULT_DEAD_LETTER_LIMIT = 1000;

/** Options of {@link ChangeCapture.track}. */
export interface TrackOptions {
  /** Operations to capture. Default: all four. */
  operations?: ChangeOperation[];
  /** Columns kept in `old`/`new`. Default: every column (the whole row). The key is always kept in `pk`. */
  columns?: string[];
  /** Run on this client/transaction instead of the capture's own Queryable. */
  tx?: Queryable;
}

/** Options of {@link ChangeCapture.untrack}, {@link ChangeCapture.dropGroup}. */
export interface ChangeTxOptions {
  /** Run on this client/transaction instead of the capture's own Queryable. */
  tx?: Queryable;
}

/** Options of {@link ChangeCapture.replay}. */
export interface ReplayOptions {
  /** Only these changes (ids as strings or numbers). Default: every dead letter of the group. */
  changeIds?: Array<string | number>;
  /** Run on this client/transaction instead of the capture's own Queryable. */
  tx?: Queryable;
}

/** Options of {@link ChangeCapture.deadLetters}. */
export interface DeadLetterListOptions {
  /** Most dead letters returned. Default 1000; 1 .. 100,000. */
  limit?: number;
}

/** Options of the {@link ChangeCapture} constructor. */
export interface ChangeCaptureOptions {
  /** pgcoord's schema. Default `pgcoord`. */
  schema?: string;
}

/** One tracked table, as listed by {@link ChangeCapture.tracked}. */
export interface TrackedTable {
  /** The table's schema. */
  schema: string;
  /** The table's name. */
  name: string;
  /** The operations captured. */
  operations: ChangeOperation[];
  /** Columns kept in old/new, or null for the whole row. */
  columns: string[] | null;
  /** Primary key columns, in key order; empty when the table has none (the whole row identifies it). */
  pkColumns: string[];
  /** When it was last tracked (server clock). */
  trackedAt: Date;
}

/** A consumer group's position, as listed by {@link ChangeCapture.groups}. */
export interface ChangeGroupStatus {
  /** The group's name. */
  group: string;
  /** How it delivers. */
  mode: ChangeGroupMode;
  /** This entry's lane (0 in ordered mode). */
  partition: number;
  /** The group's lane count. */
  partitions: number;
  /** Every change id at or below this one is delivered (or never existed). */
  lowWater: string;
  /** Ids written after the low-water mark: an upper bound of what is still to deliver. */
  lag: number;
  /** The consumer holding this lane (`consumerId`), or null. */
  owner: string | null;
  /** When that consumer's hold ends, or null. */
  leaseExpiresAt: Date | null;
  /** Changes delivered so far. */
  deliveredCount: number;
  /** Changes pruned by the retention bound before this group consumed them. */
  overrunCount: number;
  /** Failed tries of the batch at the position. */
  attempts: number;
  /** The last handler failure's message, or null. */
  lastError: string | null;
  /** When the row last changed (server clock). */
  updatedAt: Date;
}

/** A change the group gave up on after `maxAttempts`. */
export interface DeadLetter {
  /** The dead letter's own id (decimal string). */
  id: string;
  /** Its group. */
  group: string;
  /** The change's id (decimal string). */
  changeId: string;
  /** The change, as the handler received it (JSON). */
  change: Record<string, unknown>;
  /** Tries so far. */
  attempts: number;
  /** The last failure's message, or null. */
  lastError: string | null;
  /** `dead`, or `replay` while queued by {@link ChangeCapture.replay}. */
  state: 'dead' | 'replay';
  /** When it last failed (server clock). */
  failedAt: Date;
}

/** Options of {@link ChangeCapture.createGroup}. */
export interface CreateGroupOptions {
  /** Where the new group starts: `now` (default) or `beginning` (everything retained). */
  startFrom?: StartFrom;
  /** `ordered` (default: one consumer at a time, in order) or `parallel` (lanes). */
  mode?: ChangeGroupMode;
  /** Lanes of a parallel group. Default 8; ordered: 1. */
  partitions?: number;
}

/**
 * Change capture: installs triggers that write every INSERT, UPDATE, DELETE and TRUNCATE of the
 * tracked tables into `changes`, durably and in the writer's own transaction. No NOTIFY on the
 * write path (a notifying commit serializes writers); consumers find work by polling.
 * Read the changes with {@link ChangeConsumer}.
 *
 * @example
 * const capture = new ChangeCapture(pool);
 * await capture.track('orders');                       // public.orders, every operation
 * await capture.track({ schema: 'Sales', name: 'Line "Items"' }, { columns: ['qty'] });
 */
export class ChangeCapture {
  private readonly schema: string;
  private readonly statements: StatementRunner;

  /**
   * @param q the database (a pool); never closed by pgcoord.
   * @param options.schema pgcoord's schema. Default `pgcoord`.
   */
  constructor(q: Queryable, options: ChangeCaptureOptions = {}) {
    checkOptions('options', options);
    const queryable = checkQueryable('queryable', q);
    this.schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
    this.statements = new StatementRunner(queryable, this.schema);
  }

  /**
   * Starts capturing a table (any schema, any primary key; none -> the whole row identifies it).
   * Installing again replaces the previous settings; it is harmless to call from every process
   * at start. Re-run it after changing the table's columns or primary key.
   */
  async track(table: TableRef, options: TrackOptions = {}): Promise<TrackedTable> {
    const ref = checkTable(table);
    checkOptions('options', options);
    const operations = checkOperations(options.operations);
    const columns =
      options.columns === undefined
        ? null
        : checkTextArray('options.columns', options.columns, {
            maxBytes: MAX_NAME_BYTES,
            maxLength: 1600,
          });
    if (columns !== null && columns.length === 0) {
      throw new ValidationError('options.columns', 'must name at least one column when given');
    }
    for (const c of columns ?? []) checkName('options.columns', c);
    const on = checkTx(options.tx);
    const s = quoteIdent(this.schema);
    return this.statements.run(
      (q) =>
        withTransaction(q, async (tx) => {
          const info = await describeTable(tx, ref);
          await tx.query('SELECT pg_advisory_xact_lock($1::oid::bigint)', [info.oid]);
          const missing = (columns ?? []).filter((c) => !info.columns.includes(c));
          if (missing.length > 0) {
            throw new NotFoundError(
              `table ${quoteIdent(ref.schema)}.${quoteIdent(ref.name)} has no column ${missing.map((m) => JSON.stringify(m)).join(', ')}`,
            );
          }
          for (const stmt of captureDdl(this.schema, ref, info, operations, columns)) {
            await tx.query(stmt);
          }
          const { rows } = await tx.query<TrackedRow>(
            `INSERT INTO ${s}.tracked_tables AS t
             (table_oid, schema_name, table_name, operations, columns, pk_columns)
           VALUES ($1::oid, $2::text, $3::text, $4::text[], $5::text[], $6::text[])
           ON CONFLICT (table_oid) DO UPDATE SET schema_name = EXCLUDED.schema_name,
             table_name = EXCLUDED.table_name, operations = EXCLUDED.operations,
             columns = EXCLUDED.columns, pk_columns = EXCLUDED.pk_columns, tracked_at = now()
           RETURNING *`,
            [info.oid, ref.schema, ref.name, operations, columns, info.pk],
          );
          return toTracked(rows[0]!);
        }),
      { tx: on },
    );
  }

  /** Stops capturing a table: drops its triggers. Changes already captured stay. Returns whether it was tracked. */
  async untrack(table: TableRef, options: ChangeTxOptions = {}): Promise<boolean> {
    const ref = checkTable(table);
    const on = optionsTx(options);
    const s = quoteIdent(this.schema);
    return this.statements.run(
      (q) =>
        withTransaction(q, async (tx) => {
          const { rows } = await tx.query<{ oid: number }>(
            `SELECT c.oid::int8 AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1::text AND c.relname = $2::text`,
            [ref.schema, ref.name],
          );
          const oid = rows[0]?.oid;
          if (oid === undefined) return false;
          await tx.query('SELECT pg_advisory_xact_lock($1::oid::bigint)', [oid]);
          for (const stmt of dropDdl(this.schema, ref, Number(oid), ALL_OPERATIONS)) {
            await tx.query(stmt);
          }
          const del = await tx.query(`DELETE FROM ${s}.tracked_tables WHERE table_oid = $1::oid`, [
            oid,
          ]);
          return (del.rowCount ?? 0) > 0;
        }),
      { tx: on },
    );
  }

  /** The tracked tables, by schema and name. */
  async tracked(): Promise<TrackedTable[]> {
    const { rows } = await this.statements.run(
      (q) =>
        q.query<TrackedRow>(
          `SELECT * FROM ${quoteIdent(this.schema)}.tracked_tables ORDER BY schema_name, table_name`,
        ),
      { idempotent: true },
    );
    return rows.map(toTracked);
  }

  /** Every consumer group's position, lag and failure state (one entry per partition). */
  async groups(): Promise<ChangeGroupStatus[]> {
    const s = quoteIdent(this.schema);
    const { rows } = await this.statements.run(
      (q) =>
        q.query(
          `SELECT g.*, greatest(0, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                                      FROM ${s}.change_ids) - g.low_water) AS lag
             FROM ${s}.change_groups g ORDER BY group_name, partition`,
        ),
      { idempotent: true },
    );
    return rows.map((r) => ({
      group: r.group_name,
      mode: r.mode,
      partition: r.partition,
      partitions: r.partitions,
      lowWater: String(r.low_water),
      lag: Number(r.lag),
      owner: r.owner,
      leaseExpiresAt: r.lease_expires_at,
      deliveredCount: Number(r.delivered_count),
      overrunCount: Number(r.overrun_count),
      attempts: r.attempts,
      lastError: r.last_error,
      updatedAt: r.updated_at,
    }));
  }

  /** Dead letters of a group, oldest first. */
  async deadLetters(group: string, options: DeadLetterListOptions = {}): Promise<DeadLetter[]> {
    checkText('group', group, { maxBytes: MAX_GROUP_BYTES });
    const limit =
      options.limit === undefined
        ? DEFAULT_DEAD_LETTER_LIMIT
        : checkInt('options.limit', options.limit, { min: 1, max: 100_000 });
    const { rows } = await this.statements.run(
      (q) =>
        q.query(
          `SELECT * FROM ${quoteIdent(this.schema)}.change_dead_letters
            WHERE group_name = $1::text ORDER BY id LIMIT $2::int`,
          [group, limit],
        ),
      { idempotent: true },
    );
    return rows.map((r) => ({
      id: String(r.id),
      group: r.group_name,
      changeId: String(r.change_id),
      change: r.change,
      attempts: r.attempts,
      lastError: r.last_error,
      state: r.state,
      failedAt: r.failed_at,
    }));
  }

  /**
   * Puts dead letters back in front of the group: running consumers deliver them again (before
   * new changes, outside per-key order). `changeIds` limits it to those changes; default all.
   * Returns how many were queued.
   */
  async replay(group: string, options: ReplayOptions = {}): Promise<number> {
    checkText('group', group, { maxBytes: MAX_GROUP_BYTES });
    const tx = optionsTx(options);
    let ids: string[] | null = null;
    if (options.changeIds !== undefined) {
      if (!Array.isArray(options.changeIds)) {
        throw new ValidationError(
          'options.changeIds',
          `must be an array, got ${describe(options.changeIds)}`,
        );
      }
      ids = options.changeIds.map((id, i) => {
        const v = String(id);
        if (!/^[0-9]{1,19}$/.test(v)) {
          throw new ValidationError(`options.changeIds[${i}]`, 'must be a change id');
        }
        return v;
      });
    }
    const res = await this.statements.run(
      (q) =>
        q.query(
          `UPDATE ${quoteIdent(this.schema)}.change_dead_letters SET state = 'replay'
            WHERE group_name = $1::text AND state = 'dead'
              AND ($2::bigint[] IS NULL OR change_id = ANY($2::bigint[]))`,
          [group, ids],
        ),
      { tx },
    );
    return res.rowCount ?? 0;
  }

  /**
   * Creates a consumer group without consuming (a consumer's `start()` does the same for its own
   * group). `startFrom`: `now` (default; changes written after this call) or `beginning` (all that
   * is retained); `mode` `ordered` (default) or `parallel` with `partitions` lanes (default 8).
   * Returns whether the group was created; an existing group is left as it is, and one that exists
   * in another mode or partition count is a ConflictError.
   */
  async createGroup(group: string, options: CreateGroupOptions = {}): Promise<boolean> {
    checkText('group', group, { maxBytes: MAX_GROUP_BYTES });
    checkOptions('options', options);
    const startFrom = checkOneOf('options.startFrom', options.startFrom, START_FROM, 'now');
    const mode = checkOneOf('options.mode', options.mode, CHANGE_GROUP_MODES, 'ordered');
    const partitions =
      mode === 'ordered'
        ? checkInt('options.partitions', options.partitions ?? 1, { min: 1, max: 1 })
        : checkInt('options.partitions', options.partitions ?? DEFAULT_PARTITIONS, {
            min: 1,
            max: MAX_PARTITIONS,
          });
    const s = quoteIdent(this.schema);
    // All partitions or none: a group that exists (in any shape) gets no new rows.
    const { rows } = await this.statements.run((q) =>
      q.query<{ inserted: number; mode: string; partitions: number }>(
        `WITH ins AS (
           INSERT INTO ${s}.change_groups (group_name, partition, partitions, mode, low_water)
           SELECT $1::text, p, $2::int, $3::text,
                  CASE WHEN $4::text = 'now'
                       THEN (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${s}.change_ids)
                       ELSE 0 END
             FROM generate_series(0, $2::int - 1) p
            WHERE NOT EXISTS (SELECT 1 FROM ${s}.change_groups WHERE group_name = $1::text)
           ON CONFLICT (group_name, partition) DO NOTHING
           RETURNING 1)
         SELECT (SELECT count(*) FROM ins)::int AS inserted, g.mode, g.partitions
           FROM (SELECT 1) one
           LEFT JOIN (SELECT DISTINCT mode, partitions FROM ${s}.change_groups
                       WHERE group_name = $1::text) g ON true`,
        [group, partitions, mode, startFrom],
      ),
    );
    const row = rows[0]!;
    if (row.mode !== null && (row.mode !== mode || row.partitions !== partitions)) {
      throw new ConflictError(
        `group "${group}" exists as ${row.mode} with ${row.partitions} partition(s); asked for ${mode} with ${partitions}`,
      );
    }
    return row.inserted > 0;
  }

  /** Forgets a consumer group: its position and dead letters. Returns whether it existed. */
  async dropGroup(group: string, options: ChangeTxOptions = {}): Promise<boolean> {
    checkText('group', group, { maxBytes: MAX_GROUP_BYTES });
    const on = optionsTx(options);
    const s = quoteIdent(this.schema);
    return this.statements.run(
      (q) =>
        withTransaction(q, async (tx) => {
          await tx.query(`DELETE FROM ${s}.change_dead_letters WHERE group_name = $1::text`, [
            group,
          ]);
          const r = await tx.query(`DELETE FROM ${s}.change_groups WHERE group_name = $1::text`, [
            group,
          ]);
          return (r.rowCount ?? 0) > 0;
        }),
      { tx: on },
    );
  }

  /**
   * Deletes changes every group has passed, and (the bound for dead groups) changes older than
   * `maxRetentionMs` whatever the groups; groups overrun that way are moved forward and counted.
   * With no group at all, changes are kept until `maxRetentionMs`. Consumers call this in the
   * background; one process at a time does the work (an advisory lock), the others return zero.
   */
  async prune(options: PruneOptions = {}): Promise<PruneResult> {
    checkOptions('options', options);
    const maxRetentionMs =
      options.maxRetentionMs === undefined
        ? DEFAULT_MAX_RETENTION_MS
        : checkInt('options.maxRetentionMs', options.maxRetentionMs, {
            min: 1,
            max: MAX_RETENTION_MS,
          });
    const maxRows =
      options.maxRows === undefined
        ? DEFAULT_PRUNE_MAX_ROWS
        : checkInt('options.maxRows', options.maxRows, { min: 1, max: 10_000_000 });
    return this.statements.run((q) =>
      withTransaction(q, (tx) => pruneChanges(tx, this.schema, maxRetentionMs, maxRows)),
    );
  }
}

interface TrackedRow {
  schema_name: string;
  table_name: string;
  operations: ChangeOperation[];
  columns: string[] | null;
  pk_columns: string[];
  tracked_at: Date;
}

function toTracked(r: TrackedRow): TrackedTable {
  return {
    schema: r.schema_name,
    name: r.table_name,
    operations: r.operations,
    columns: r.columns,
    pkColumns: r.pk_columns,
    trackedAt: r.tracked_at,
  };
}
