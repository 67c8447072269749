import { createHash } from 'node:crypto';
import { coerceError, ConflictError, NotFoundError, ValidationError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA, dollarQuote, quoteIdent } from '../core/index.js';
import { quoteLiteral } from '../core/index.js';
import { ensureMigrated } from '../core/index.js';
import { withTransaction, type Queryable } from '../core/index.js';
import { checkQueryable, checkTx } from '../core/index.js';
import { checkInt, checkOptions, checkText, checkTextArray, describe } from '../core/index.js';

/** A row operation that can be captured. */
export type ChangeOperation = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';

/** The operations captured when `track()` is given none. */
export const ALL_OPERATIONS: readonly ChangeOperation[] = [
  'INSERT',
  'UPDATE',
  'DELETE',
  'TRUNCATE',
];

/** A table: a bare name (schema `public`) or `{ schema, name }`. Names are taken verbatim. */
export type TableRef = string | { schema: string; name: string };

export interface TrackOptions {
  /** Operations to capture. Default: all four. */
  operations?: ChangeOperation[];
  /** Columns kept in `old`/`new`. Default: every column (the whole row). The key is always kept in `pk`. */
  columns?: string[];
  /** Run on this client/transaction instead of the capture's own Queryable. */
  tx?: Queryable;
}

/** One tracked table, as listed by {@link ChangeCapture.tracked}. */
export interface TrackedTable {
  schema: string;
  name: string;
  operations: ChangeOperation[];
  /** Columns kept in old/new, or null for the whole row. */
  columns: string[] | null;
  /** Primary key columns, in key order; empty when the table has none (the whole row identifies it). */
  pkColumns: string[];
  trackedAt: Date;
}

/** A consumer group's position, as listed by {@link ChangeCapture.groups}. */
export interface ChangeGroupStatus {
  group: string;
  mode: 'ordered' | 'parallel';
  partition: number;
  partitions: number;
  /** Every change id at or below this one is delivered (or never existed). */
  lowWater: string;
  /** Ids written after the low-water mark: an upper bound of what is still to deliver. */
  lag: number;
  owner: string | null;
  leaseExpiresAt: Date | null;
  deliveredCount: number;
  /** Changes pruned by the retention bound before this group consumed them. */
  overrunCount: number;
  attempts: number;
  lastError: string | null;
  updatedAt: Date;
}

/** A change the group gave up on after `maxAttempts`. */
export interface DeadLetter {
  id: string;
  group: string;
  changeId: string;
  change: Record<string, unknown>;
  attempts: number;
  lastError: string | null;
  state: 'dead' | 'replay';
  failedAt: Date;
}

export interface PruneOptions {
  /**
   * Bound for dead or stalled groups: changes older than this are pruned even if a group has not
   * consumed them (the group's `overrunCount` grows and the consumer emits `overrun`).
   * Default 7 days. Unit: milliseconds.
   */
  maxRetentionMs?: number;
  /** Most changes deleted per call. Default 50,000. */
  maxRows?: number;
}

export interface PruneResult {
  /** Changes deleted. */
  deleted: number;
  /** Groups moved past changes they had not consumed, with how many ids each skipped. */
  overrun: Array<{ group: string; partition: number; skipped: number }>;
}

const MAX_NAME_BYTES = 63;

/** Options of {@link ChangeCapture.createGroup}. */
export interface CreateGroupOptions {
  /** Where the new group starts: `now` (default) or `beginning` (everything retained). */
  startFrom?: 'now' | 'beginning';
  /** `ordered` (default: one consumer at a time, in order) or `parallel` (lanes). */
  mode?: 'ordered' | 'parallel';
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
  private readonly q: Queryable;
  private readonly schema: string;

  /**
   * @param q the database (a pool); never closed by pgcoord.
   * @param options.schema pgcoord's schema. Default `pgcoord`.
   */
  constructor(q: Queryable, options: { schema?: string } = {}) {
    checkOptions('options', options);
    this.q = checkQueryable('queryable', q);
    this.schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
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
    try {
      await ensureMigrated(this.q, this.schema);
      return await withTransaction(on ?? this.q, async (tx) => {
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
      });
    } catch (err) {
      throw coerceError(err);
    }
  }

  /** Stops capturing a table: drops its triggers. Changes already captured stay. Returns whether it was tracked. */
  async untrack(table: TableRef, options: { tx?: Queryable } = {}): Promise<boolean> {
    const ref = checkTable(table);
    checkOptions('options', options);
    const on = checkTx(options.tx);
    const s = quoteIdent(this.schema);
    try {
      await ensureMigrated(this.q, this.schema);
      return await withTransaction(on ?? this.q, async (tx) => {
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
      });
    } catch (err) {
      throw coerceError(err);
    }
  }

  /** The tracked tables, by schema and name. */
  async tracked(): Promise<TrackedTable[]> {
    try {
      await ensureMigrated(this.q, this.schema);
      const { rows } = await this.q.query<TrackedRow>(
        `SELECT * FROM ${quoteIdent(this.schema)}.tracked_tables ORDER BY schema_name, table_name`,
      );
      return rows.map(toTracked);
    } catch (err) {
      throw coerceError(err);
    }
  }

  /** Every consumer group's position, lag and failure state (one entry per partition). */
  async groups(): Promise<ChangeGroupStatus[]> {
    const s = quoteIdent(this.schema);
    try {
      await ensureMigrated(this.q, this.schema);
      const { rows } = await this.q.query(
        `SELECT g.*, greatest(0, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                                    FROM ${s}.change_ids) - g.low_water) AS lag
           FROM ${s}.change_groups g ORDER BY group_name, partition`,
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
    } catch (err) {
      throw coerceError(err);
    }
  }

  /** Dead letters of a group, oldest first. */
  async deadLetters(group: string, options: { limit?: number } = {}): Promise<DeadLetter[]> {
    checkText('group', group, { maxBytes: 200 });
    const limit =
      options.limit === undefined
        ? 1000
        : checkInt('options.limit', options.limit, { min: 1, max: 100_000 });
    try {
      await ensureMigrated(this.q, this.schema);
      const { rows } = await this.q.query(
        `SELECT * FROM ${quoteIdent(this.schema)}.change_dead_letters
          WHERE group_name = $1::text ORDER BY id LIMIT $2::int`,
        [group, limit],
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
    } catch (err) {
      throw coerceError(err);
    }
  }

  /**
   * Puts dead letters back in front of the group: running consumers deliver them again (before
   * new changes, outside per-key order). `changeIds` limits it to those changes; default all.
   * Returns how many were queued.
   */
  async replay(
    group: string,
    options: { changeIds?: Array<string | number>; tx?: Queryable } = {},
  ): Promise<number> {
    checkText('group', group, { maxBytes: 200 });
    checkOptions('options', options);
    const tx = checkTx(options.tx);
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
    try {
      await ensureMigrated(this.q, this.schema);
      const res = await (tx ?? this.q).query(
        `UPDATE ${quoteIdent(this.schema)}.change_dead_letters SET state = 'replay'
          WHERE group_name = $1::text AND state = 'dead'
            AND ($2::bigint[] IS NULL OR change_id = ANY($2::bigint[]))`,
        [group, ids],
      );
      return res.rowCount ?? 0;
    } catch (err) {
      throw coerceError(err);
    }
  }

  /**
   * Creates a consumer group without consuming (a consumer's `start()` does the same for its own
   * group). `startFrom`: `now` (default; changes written after this call) or `beginning` (all that
   * is retained); `mode` `ordered` (default) or `parallel` with `partitions` lanes (default 8).
   * Returns whether the group was created; an existing group is left as it is, and one that exists
   * in another mode or partition count is a ConflictError.
   */
  async createGroup(group: string, options: CreateGroupOptions = {}): Promise<boolean> {
    checkText('group', group, { maxBytes: 200 });
    checkOptions('options', options);
    const startFrom = options.startFrom ?? 'now';
    if (startFrom !== 'now' && startFrom !== 'beginning') {
      throw new ValidationError(
        'options.startFrom',
        `must be 'now' or 'beginning', got ${describe(startFrom)}`,
      );
    }
    const mode = options.mode ?? 'ordered';
    if (mode !== 'ordered' && mode !== 'parallel') {
      throw new ValidationError(
        'options.mode',
        `must be 'ordered' or 'parallel', got ${describe(mode)}`,
      );
    }
    const partitions =
      mode === 'ordered'
        ? checkInt('options.partitions', options.partitions ?? 1, { min: 1, max: 1 })
        : checkInt('options.partitions', options.partitions ?? 8, { min: 1, max: 1024 });
    const s = quoteIdent(this.schema);
    try {
      await ensureMigrated(this.q, this.schema);
      // All partitions or none: a group that exists (in any shape) gets no new rows.
      const { rows } = await this.q.query<{ inserted: number; mode: string; partitions: number }>(
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
      );
      const row = rows[0]!;
      if (row.mode !== null && (row.mode !== mode || row.partitions !== partitions)) {
        throw new ConflictError(
          `group "${group}" exists as ${row.mode} with ${row.partitions} partition(s); asked for ${mode} with ${partitions}`,
        );
      }
      return row.inserted > 0;
    } catch (err) {
      throw coerceError(err);
    }
  }

  /** Forgets a consumer group: its position and dead letters. Returns whether it existed. */
  async dropGroup(group: string, options: { tx?: Queryable } = {}): Promise<boolean> {
    checkText('group', group, { maxBytes: 200 });
    const on = checkTx(checkOptions('options', options).tx);
    const s = quoteIdent(this.schema);
    try {
      await ensureMigrated(this.q, this.schema);
      return await withTransaction(on ?? this.q, async (tx) => {
        await tx.query(`DELETE FROM ${s}.change_dead_letters WHERE group_name = $1::text`, [group]);
        const r = await tx.query(`DELETE FROM ${s}.change_groups WHERE group_name = $1::text`, [
          group,
        ]);
        return (r.rowCount ?? 0) > 0;
      });
    } catch (err) {
      throw coerceError(err);
    }
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
        ? 7 * 24 * 3600 * 1000
        : checkInt('options.maxRetentionMs', options.maxRetentionMs, {
            min: 1,
            max: 3650 * 24 * 3600 * 1000,
          });
    const maxRows =
      options.maxRows === undefined
        ? 50_000
        : checkInt('options.maxRows', options.maxRows, { min: 1, max: 10_000_000 });
    const s = quoteIdent(this.schema);
    try {
      await ensureMigrated(this.q, this.schema);
      return await withTransaction(this.q, async (tx) => {
        const lock = await tx.query<{ ok: boolean }>(
          `SELECT pg_try_advisory_xact_lock(hashtextextended('pgcoord.changes.prune:' || $1::text, 0)) AS ok`,
          [this.schema],
        );
        if (!lock.rows[0]?.ok) return { deleted: 0, overrun: [] };
        // The oldest retained ids decide the age bound: ids grow with time, so a bounded look at
        // the head of the table finds the last id past the retention age without an index.
        const { rows } = await tx.query<{ safe: string | null; aged: string | null }>(
          `SELECT (SELECT min(low_water) FROM ${s}.change_groups) AS safe,
                  (SELECT max(id) FROM (SELECT id, written_at FROM ${s}.changes ORDER BY id
                                         LIMIT $1::int) h
                    WHERE written_at < now() - make_interval(secs => $2::float8 / 1000)) AS aged`,
          [maxRows, maxRetentionMs],
        );
        const safe = rows[0]?.safe ?? null;
        const aged = rows[0]?.aged ?? null;
        const overrun: PruneResult['overrun'] = [];
        if (aged !== null) {
          const moved = await tx.query<{ group_name: string; partition: number; skipped: string }>(
            `UPDATE ${s}.change_groups g
                SET overrun_count = overrun_count + ($1::bigint - low_water),
                    low_water = $1::bigint,
                    delivered = delivered * int8multirange(int8range($1::bigint, NULL, '(]')),
                    updated_at = now()
               FROM (SELECT group_name, partition, low_water AS before FROM ${s}.change_groups
                      WHERE low_water < $1::bigint FOR UPDATE) o
              WHERE g.group_name = o.group_name AND g.partition = o.partition
              RETURNING g.group_name, g.partition, ($1::bigint - o.before)::text AS skipped`,
            [aged],
          );
          for (const r of moved.rows) {
            overrun.push({
              group: r.group_name,
              partition: r.partition,
              skipped: Number(r.skipped),
            });
          }
        }
        const cutoff =
          safe === null ? aged : aged === null ? safe : BigInt(aged) > BigInt(safe) ? aged : safe;
        if (cutoff === null) return { deleted: 0, overrun };
        const del = await tx.query(
          `DELETE FROM ${s}.changes WHERE id IN (SELECT id FROM ${s}.changes
             WHERE id <= $1::bigint ORDER BY id LIMIT $2::int)`,
          [cutoff, maxRows],
        );
        return { deleted: del.rowCount ?? 0, overrun };
      });
    } catch (err) {
      throw coerceError(err);
    }
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

/** Validates a table reference; a bare name means schema `public`. */
export function checkTable(table: unknown): { schema: string; name: string } {
  if (typeof table === 'string') return { schema: 'public', name: checkName('table', table) };
  if (typeof table !== 'object' || table === null || Array.isArray(table)) {
    throw new ValidationError(
      'table',
      `must be a name or { schema, name }, got ${describe(table)}`,
    );
  }
  const t = table as { schema?: unknown; name?: unknown };
  return { schema: checkName('table.schema', t.schema), name: checkName('table.name', t.name) };
}

/** Any name the catalog can hold: every character but NUL, at most 63 bytes. */
function checkName(argument: string, value: unknown): string {
  return checkText(argument, value, { maxBytes: MAX_NAME_BYTES });
}

function checkOperations(value: unknown): ChangeOperation[] {
  if (value === undefined) return [...ALL_OPERATIONS];
  if (!Array.isArray(value) || value.length === 0) {
    throw new ValidationError('options.operations', 'must be a non-empty array of operations');
  }
  const out: ChangeOperation[] = [];
  for (const [i, op] of value.entries()) {
    if (!ALL_OPERATIONS.includes(op as ChangeOperation)) {
      throw new ValidationError(
        `options.operations[${i}]`,
        `must be one of ${ALL_OPERATIONS.join(', ')}, got ${describe(op)}`,
      );
    }
    if (!out.includes(op as ChangeOperation)) out.push(op as ChangeOperation);
  }
  return out;
}

interface TableInfo {
  oid: number;
  columns: string[];
  pk: string[];
  partitioned: boolean;
}

async function describeTable(
  q: Queryable,
  ref: { schema: string; name: string },
): Promise<TableInfo> {
  const { rows } = await q.query<{
    oid: string;
    columns: string[];
    pk: string[];
    partitioned: boolean;
  }>(
    `SELECT c.oid::int8::text AS oid, c.relkind = 'p' AS partitioned,
            ARRAY(SELECT attname::text FROM pg_attribute
                   WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum) AS columns,
            ARRAY(SELECT a.attname::text FROM pg_index i
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                   WHERE i.indrelid = c.oid AND i.indisprimary
                   ORDER BY array_position(i.indkey::int2[], a.attnum)) AS pk
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = $2::text AND c.relkind IN ('r', 'p')`,
    [ref.schema, ref.name],
  );
  const r = rows[0];
  if (!r) {
    throw new NotFoundError(`no table ${quoteIdent(ref.schema)}.${quoteIdent(ref.name)}`);
  }
  return { oid: Number(r.oid), columns: r.columns, pk: r.pk, partitioned: r.partitioned };
}

/** Trigger names carry a hash of pgcoord's schema, so two pgcoord schemas can track one table. */
function triggerName(schema: string, op: ChangeOperation): string {
  const h = createHash('sha1').update(schema).digest('hex').slice(0, 8);
  return `pgcoord_capture_${h}_${op.toLowerCase()}`;
}

function functionName(oid: number, op: ChangeOperation): string {
  return `capture_${oid}_${op.toLowerCase()}`;
}

/**
 * DDL for one table: a small PL/pgSQL function per operation with the table's names and key
 * columns written in as constants (no per-row catalog lookups or dynamic SQL), and its trigger.
 * INSERT and DELETE are statement-level with transition tables: a 10,000-row statement costs one
 * INSERT ... SELECT. UPDATE is row-level, because only a row trigger pairs OLD with NEW.
 */
function captureDdl(
  schema: string,
  ref: { schema: string; name: string },
  info: TableInfo,
  operations: ChangeOperation[],
  columns: string[] | null,
): string[] {
  const s = quoteIdent(schema);
  const table = `${quoteIdent(ref.schema)}.${quoteIdent(ref.name)}`;
  // `n.*`, not `n`: a bare alias would mean a column of that name if the table has one.
  const whole = (alias: string) => (alias === 'NEW' || alias === 'OLD' ? alias : `${alias}.*`);
  const rowJson = (alias: string) =>
    columns === null
      ? `to_jsonb(${whole(alias)})`
      : `jsonb_build_object(${columns.map((c) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(c)}`).join(', ')})`;
  const pkJson = (alias: string) =>
    info.pk.length === 0
      ? `to_jsonb(${whole(alias)})`
      : `jsonb_build_object(${info.pk.map((c) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(c)}`).join(', ')})`;
  const head = `INSERT INTO ${s}.changes (schema_name, table_name, op, pk, old, new)`;
  const names = `${quoteLiteral(ref.schema)}, ${quoteLiteral(ref.name)}`;
  // A partitioned table runs an UPDATE that moves a row to another partition as a DELETE and an
  // INSERT that fire only ROW triggers: there INSERT and DELETE must be row-level to see it.
  const rowLevel = info.partitioned;
  const bodies: Record<ChangeOperation, string> = {
    INSERT: rowLevel
      ? `${head} VALUES (${names}, 'INSERT', ${pkJson('NEW')}, NULL, ${rowJson('NEW')});`
      : `${head} SELECT ${names}, 'INSERT', ${pkJson('n')}, NULL, ${rowJson('n')} FROM pgcoord_new n;`,
    DELETE: rowLevel
      ? `${head} VALUES (${names}, 'DELETE', ${pkJson('OLD')}, ${rowJson('OLD')}, NULL);`
      : `${head} SELECT ${names}, 'DELETE', ${pkJson('o')}, ${rowJson('o')}, NULL FROM pgcoord_old o;`,
    UPDATE: `${head} VALUES (${names}, 'UPDATE', ${pkJson('NEW')}, ${rowJson('OLD')}, ${rowJson('NEW')});`,
    TRUNCATE: `${head} VALUES (${names}, 'TRUNCATE', NULL, NULL, NULL);`,
  };
  const when: Record<ChangeOperation, string> = {
    INSERT: rowLevel
      ? 'AFTER INSERT ON %T FOR EACH ROW'
      : 'AFTER INSERT ON %T REFERENCING NEW TABLE AS pgcoord_new FOR EACH STATEMENT',
    DELETE: rowLevel
      ? 'AFTER DELETE ON %T FOR EACH ROW'
      : 'AFTER DELETE ON %T REFERENCING OLD TABLE AS pgcoord_old FOR EACH STATEMENT',
    UPDATE: 'AFTER UPDATE ON %T FOR EACH ROW',
    TRUNCATE: 'AFTER TRUNCATE ON %T FOR EACH STATEMENT',
  };
  const out: string[] = [];
  const unused = ALL_OPERATIONS.filter((op) => !operations.includes(op));
  out.push(...dropDdl(schema, ref, info.oid, unused));
  for (const op of operations) {
    const fn = `${s}.${quoteIdent(functionName(info.oid, op))}`;
    // Every name in the body is a quoted identifier or literal, and the body's dollar tag is
    // one that does not occur in it: nothing in a name, the catalog's key columns included,
    // can end the body early, and the literals read the same in whichever session compiles it.
    const body = `
BEGIN
  ${bodies[op]}
  RETURN NULL;
END
`;
    out.push(
      `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuote(body, 'pgcoord_capture')}`,
    );
    const trig = quoteIdent(triggerName(schema, op));
    out.push(`DROP TRIGGER IF EXISTS ${trig} ON ${table}`);
    // A replacer function: in a replacement string `$$`, `$&`... are patterns, and a quoted
    // name may contain them.
    const on = when[op].replace('%T', () => table);
    out.push(`CREATE TRIGGER ${trig} ${on} EXECUTE FUNCTION ${fn}()`);
  }
  return out;
}

function dropDdl(
  schema: string,
  ref: { schema: string; name: string },
  oid: number,
  operations: readonly ChangeOperation[],
): string[] {
  const table = `${quoteIdent(ref.schema)}.${quoteIdent(ref.name)}`;
  return operations.flatMap((op) => [
    `DROP TRIGGER IF EXISTS ${quoteIdent(triggerName(schema, op))} ON ${table}`,
    `DROP FUNCTION IF EXISTS ${quoteIdent(schema)}.${quoteIdent(functionName(oid, op))}()`,
  ]);
}
