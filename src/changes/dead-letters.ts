import type pg from 'pg';
import { changeFromJson, type Change } from './change.js';

// The SQL of a consumer's failure path: counting a failed try in the group row, moving the
// change that keeps failing to the dead letters, and delivering the dead letters that
// ChangeCapture.replay queued. Each runs on the consumer's batch transaction (`client`); `s` is
// pgcoord's schema, already quoted.

/**
 * Counts a failed try of the batch at `part`'s position (the batch is rolled back already).
 * After `maxAttempts` a batch of `size` > 1 is split: the next tries take one change at a time,
 * so only the change that keeps failing is dead-lettered.
 */
export async function recordFailure(
  client: pg.PoolClient,
  s: string,
  group: string,
  part: number,
  maxAttempts: number,
  size: number,
  message: string,
): Promise<void> {
  await client.query(
    `UPDATE ${s}.change_groups
        SET attempts = CASE WHEN attempts + 1 >= $3::int AND $4::int > 1 THEN 0 ELSE attempts + 1 END,
            isolate = CASE WHEN attempts + 1 >= $3::int AND $4::int > 1 THEN $4::int ELSE isolate END,
            last_error = left($5::text, 2000), updated_at = now()
      WHERE group_name = $1::text AND partition = $2::int`,
    [group, part, maxAttempts, size, message],
  );
}

/** Moves a change that failed `attempts` times to the dead letters. Returns its last error. */
export async function deadLetter(
  client: pg.PoolClient,
  s: string,
  group: string,
  part: number,
  change: Change,
  attempts: number,
): Promise<string> {
  const { rows } = await client.query<{ last_error: string | null }>(
    `WITH g AS (SELECT last_error FROM ${s}.change_groups WHERE group_name = $1::text AND partition = $5::int)
     INSERT INTO ${s}.change_dead_letters AS d (group_name, change_id, change, attempts, last_error)
     SELECT $1::text, $2::bigint, $3::jsonb, $4::int, g.last_error FROM g
     ON CONFLICT (group_name, change_id) DO UPDATE
       SET state = 'dead', attempts = d.attempts + EXCLUDED.attempts,
           last_error = EXCLUDED.last_error, failed_at = now()
     RETURNING last_error`,
    [group, change.id, JSON.stringify(change), attempts, part],
  );
  return rows[0]?.last_error ?? 'handler failed';
}

/** Dead letters queued for replay, locked for this transaction (at most `limit`). */
export interface ReplayBatch {
  /** The dead letters' ids. */
  ids: string[];
  /** Their changes, in id order. */
  changes: Change[];
}

/** Locks up to `limit` dead letters of `group` queued by ChangeCapture.replay. */
export async function claimReplays(
  client: pg.PoolClient,
  s: string,
  group: string,
  limit: number,
): Promise<ReplayBatch> {
  const { rows } = await client.query<{ id: string; change: Change }>(
    `SELECT id::text, change FROM ${s}.change_dead_letters
      WHERE group_name = $1::text AND state = 'replay' ORDER BY id LIMIT $2::int FOR UPDATE SKIP LOCKED`,
    [group, limit],
  );
  return { ids: rows.map((r) => r.id), changes: rows.map((r) => changeFromJson(r.change)) };
}

/** Removes replayed dead letters once their handler succeeded. */
export async function deleteReplayed(
  client: pg.PoolClient,
  s: string,
  ids: string[],
): Promise<void> {
  await client.query(`DELETE FROM ${s}.change_dead_letters WHERE id = ANY($1::bigint[])`, [ids]);
}

/** Puts replayed dead letters back to `dead` after their handler failed again. */
export async function failReplayed(
  client: pg.PoolClient,
  s: string,
  ids: string[],
  message: string,
): Promise<void> {
  await client.query(
    `UPDATE ${s}.change_dead_letters SET state = 'dead', attempts = attempts + 1,
            last_error = left($2::text, 2000), failed_at = now() WHERE id = ANY($1::bigint[])`,
    [ids, message],
  );
}
