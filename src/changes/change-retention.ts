import { quoteIdent, type Queryable } from '../core/index.js';

// Retention of the change journal: what ChangeCapture.prune deletes, and how groups that a
// retention bound overran are moved forward.

/** Default bound of {@link PruneOptions.maxRetentionMs}: 7 days. */
export const DEFAULT_MAX_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Longest {@link PruneOptions.maxRetentionMs}: 10 years. */
export const MAX_RETENTION_MS = 3650 * 24 * 3600 * 1000;
/** Default of {@link PruneOptions.maxRows}. */
export const DEFAULT_PRUNE_MAX_ROWS = 50_000;

/** Options of {@link ChangeCapture.prune}. */
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

/** What {@link ChangeCapture.prune} did. */
export interface PruneResult {
  /** Changes deleted. */
  deleted: number;
  /** Groups moved past changes they had not consumed, with how many ids each skipped. */
  overrun: Array<{ group: string; partition: number; skipped: number }>;
}

/**
 * Prunes in the caller's transaction `tx` (see {@link ChangeCapture.prune}): one process at a
 * time does the work (an advisory lock per schema), the others return zero at once.
 */
export async function pruneChanges(
  tx: Queryable,
  schema: string,
  maxRetentionMs: number,
  maxRows: number,
): Promise<PruneResult> {
  const s = quoteIdent(schema);
  const lock = await tx.query<{ ok: boolean }>(
    `SELECT pg_try_advisory_xact_lock(hashtextextended('pgcoord.changes.prune:' || $1::text, 0)) AS ok`,
    [schema],
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
}
