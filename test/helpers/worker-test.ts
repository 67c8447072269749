// Pieces the worker tests share.
import type pg from 'pg';

/** A promise and its resolver. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Every row of a list (schema pgcoord): item, attempts, whether it is leased now. */
export async function listRows(pool: pg.Pool, list: string) {
  const { rows } = await pool.query<{ item: string; attempts: number; leased: boolean }>(
    `SELECT item, attempts,
            token IS NOT NULL AND coalesce(leased_until, run_at) > now() AS leased
       FROM pgcoord.list_items WHERE list = $1 ORDER BY item`,
    [list],
  );
  return rows;
}
