import type { ChangeOperation } from './capture-ddl.js';

/*
 * A consumer group's position, and how it stays correct when transactions commit out of order.
 *
 * A position is not a single id. It is a low-water mark W (every id <= W is delivered or will
 * never exist) plus the set of ids above W already delivered (`delivered`, a multirange that stays
 * small: runs of consecutive ids). Each batch takes the lowest visible ids above W that are NOT in
 * that set, so a change that commits late with an id below others already delivered is picked up
 * when it becomes visible. W only moves past an id once no transaction can still commit it (see
 * FinalityTracker). Delivery itself never waits for long transactions; only the bookkeeping does.
 */

/** A change as the fetch statement returns it (JSON, snake_case). */
export interface ChangeRow {
  id: string;
  xid: string;
  schema_name: string;
  table_name: string;
  op: ChangeOperation;
  pk: Record<string, unknown> | null;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
  written_at: string;
  committed_at: string | null;
}

/** The fetch statement's one row: the claimed position, the batch and the bookkeeping reads. */
export interface FetchRow {
  low_water: string;
  attempts: number;
  rows: ChangeRow[];
  covered: string;
  xmin: string;
  seq: string;
  replays: number;
}

/**
 * Knows up to which id every change is final (committed or aborted). The consumer reads the id
 * sequence (S), then, in a later statement, takes a transaction id of its own (X =
 * pg_current_xact_id()). Every id <= S was allocated by a transaction whose xid was assigned
 * before that read (the capture trigger runs after the row write that assigned it), so its xid is
 * below X; once a later snapshot's xmin (oldest running xid) is above X, every id <= S is final.
 * A snapshot's xmax would not do: PostgreSQL reuses a snapshot while no transaction ends, so its
 * xmax can be older than the statement (this once skipped changes; a test keeps it out).
 */
export class FinalityTracker {
  /** Highest sequence value read by a statement that has completed. */
  lastCompletedSeq: bigint | null = null;
  /** Every id at or below this is final. */
  finalUpTo: bigint | null = null;
  private samples: Array<{ seq: bigint; x: bigint }> = [];

  /** Whether an anchoring xid would let `finalUpTo` advance (some read ids are not known final). */
  needsAnchor(): boolean {
    const seq = this.lastCompletedSeq;
    const newest = this.samples[this.samples.length - 1]?.seq ?? this.finalUpTo;
    return seq !== null && (newest === null || seq > newest);
  }

  /**
   * Records what a statement saw: its sequence read, its snapshot's xmin and, for an anchoring
   * tick, its own xid paired with a sequence value read by a statement that completed before it
   * started .
   */
  observe(seqBefore: bigint | null, r: { seq: string; xmin: string; x?: string | null }): void {
    const xmin = BigInt(r.xmin);
    if (seqBefore !== null && r.x) {
      this.samples.push({ seq: seqBefore, x: BigInt(r.x) });
      if (this.samples.length > 256) this.samples.splice(128, 1);
    }
    while (this.samples.length > 0 && this.samples[0]!.x < xmin) {
      const s = this.samples.shift()!;
      if (this.finalUpTo === null || s.seq > this.finalUpTo) this.finalUpTo = s.seq;
    }
    const seq = BigInt(r.seq);
    if (this.lastCompletedSeq === null || seq > this.lastCompletedSeq) this.lastCompletedSeq = seq;
  }
}

/**
 * Claims the partition row (ordered mode: only if this consumer owns the lease or it expired)
 * and reads the next changes: the lowest visible ids in the gaps of the position. Also returns
 * `covered`, the runs of visible ids up to the last one taken (they become "delivered"), and
 * the snapshot bounds and sequence value for the low-water bookkeeping.
 */
export function fetchBatchSql(s: string): string {
  return `
WITH g AS (
SELECT low_water, delivered, attempts, isolate FROM ${s}.change_groups
 WHERE group_name = $1::text AND partition = $2::int
   AND ($3::bool OR owner IS NULL OR owner = $4::text OR lease_expires_at < now())
 FOR UPDATE SKIP LOCKED
), gaps AS (
SELECT r FROM g, unnest(int8multirange(int8range(g.low_water, NULL, '(]')) - g.delivered) AS r
), lim AS (
SELECT CASE WHEN g.isolate > 0 OR g.attempts >= $8::int THEN 1 ELSE $6::int END AS n FROM g
), batch AS (
SELECT b.* FROM gaps CROSS JOIN LATERAL (
  SELECT c.id, c.xid, c.schema_name, c.table_name, c.op, c.pk, c.old, c.new, c.written_at
    FROM ${s}.changes c
   WHERE c.id >= lower(gaps.r) AND (upper_inf(gaps.r) OR c.id < upper(gaps.r))
     AND ($5::int = 1 OR mod(abs(hashtextextended(c.schema_name || '.' || c.table_name || ':' || coalesce(c.pk::text, ''), 0)), $5::int) = $2::int)
   ORDER BY c.id LIMIT (SELECT n FROM lim)) b
ORDER BY b.id LIMIT (SELECT n FROM lim)
), runs AS (
SELECT v.id, v.id - row_number() OVER (ORDER BY v.id) AS grp
  FROM gaps CROSS JOIN LATERAL (
    SELECT c.id FROM ${s}.changes c
     WHERE c.id >= lower(gaps.r) AND (upper_inf(gaps.r) OR c.id < upper(gaps.r))
       AND c.id <= (SELECT max(id) FROM batch)
     OFFSET 0) v
)
SELECT g.low_water::text, g.attempts,
     (SELECT coalesce(json_agg(json_build_object(
        'id', b.id::text, 'xid', b.xid::text, 'schema_name', b.schema_name, 'table_name', b.table_name,
        'op', b.op, 'pk', b.pk, 'old', b.old, 'new', b.new, 'written_at', b.written_at,
        'committed_at', CASE WHEN $7::bool THEN pg_xact_commit_timestamp(b.xid::xid) END)
        ORDER BY b.id), '[]'::json) FROM batch b) AS rows,
     (SELECT coalesce(range_agg(int8range(lo, hi, '[]')), '{}'::int8multirange)::text
        FROM (SELECT min(id) AS lo, max(id) AS hi FROM runs GROUP BY grp) x) AS covered,
     pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
     (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${s}.change_ids)::text AS seq,
     (SELECT count(*) FROM ${s}.change_dead_letters
       WHERE group_name = $1::text AND state = 'replay')::int AS replays
FROM g`;
}

/**
 * Records the batch as delivered and moves the low-water mark up to `finalUpTo` (ids no
 * transaction can still commit), but never past a visible change of this partition that is not
 * delivered yet. Runs in the batch's transaction, which holds the row lock: a consumer that lost
 * its connection cannot commit progress.
 */
export function commitBatchSql(s: string): string {
  return `
WITH g AS (
SELECT low_water AS w, delivered + $3::int8multirange AS d FROM ${s}.change_groups
 WHERE group_name = $1::text AND partition = $2::int
), nw AS (
SELECT CASE WHEN $4::bigint IS NULL OR $4::bigint <= g.w THEN g.w
            ELSE coalesce((
              SELECT min(v.id) - 1 FROM unnest(int8multirange(int8range(g.w, $4::bigint, '(]')) - g.d) AS r
               CROSS JOIN LATERAL (
                 SELECT c.id FROM ${s}.changes c
                  WHERE c.id >= lower(r) AND c.id < upper(r)
                    AND ($5::int = 1 OR mod(abs(hashtextextended(c.schema_name || '.' || c.table_name || ':' || coalesce(c.pk::text, ''), 0)), $5::int) = $2::int)
                  ORDER BY c.id LIMIT 1) v), $4::bigint)
       END AS w,
       g.d
  FROM g
)
UPDATE ${s}.change_groups t
 SET low_water = greatest(t.low_water, nw.w),
     delivered = nw.d * int8multirange(int8range(greatest(t.low_water, nw.w), NULL, '(]')),
     attempts = CASE WHEN $9::bool THEN 0 ELSE t.attempts END,
     isolate = greatest(0, t.isolate - CASE WHEN $9::bool THEN 1 ELSE 0 END),
     owner = $6::text,
     lease_expires_at = now() + make_interval(secs => $7::float8 / 1000),
     delivered_count = t.delivered_count + $8::int,
     updated_at = now()
FROM nw
 WHERE t.group_name = $1::text AND t.partition = $2::int`;
}
