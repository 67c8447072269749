import pg from 'pg';

/**
 * Anything that runs a parameterized statement: a `pg.Pool`, a `pg.PoolClient` or `pg.Client`
 * (for example inside the caller's transaction), or a `ClusterPool`. pgcoord never closes a
 * Queryable it was given.
 */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/** A Queryable that can also hand out a dedicated client (a pool). */
export interface ConnectableQueryable extends Queryable {
  connect(): Promise<pg.PoolClient>;
}

/** Whether `q` can hand out dedicated clients (a pool), as opposed to being one client. */
export function isConnectable(q: Queryable): q is ConnectableQueryable {
  return typeof (q as Partial<ConnectableQueryable>).connect === 'function' && !isClient(q);
}

/** A single connection (`pg.Client` / `pg.PoolClient`): has `release` or `processID`. */
function isClient(q: Queryable): boolean {
  const c = q as { release?: unknown; processID?: unknown };
  return typeof c.release === 'function' || typeof c.processID === 'number';
}

/**
 * Checks a client out of `pool` for `fn` and gives it back after. A checked-out client has no
 * 'error' listener (pg-pool removes its own when it hands the client out), and the server's
 * goodbye (a terminated backend) can arrive in the same socket read as the message that
 * completed the checkout: an unheard 'error' event then ends the process. So the listener goes
 * on in the same tick the client is handed out, through the callback form of `connect` on a
 * `pg.Pool` (the promise form resumes us too late: microtasks run after the whole socket read).
 * The error is kept; the next statement fails with it, and the client is destroyed rather
 * than reused. `fn` can mark the client broken too (say after a failed ROLLBACK) with `markBroken`.
 */
export async function withClient<T>(
  pool: { connect(): Promise<pg.PoolClient> },
  fn: (client: pg.PoolClient, markBroken: (err: unknown) => void) => Promise<T>,
): Promise<T> {
  let broken: unknown;
  const markBroken = (err: unknown): void => {
    broken ??= err;
  };
  const client = await checkout(pool, markBroken);
  try {
    return await fn(client, markBroken);
  } finally {
    client.off('error', markBroken);
    client.release(broken === undefined ? undefined : (broken as Error));
  }
}

/**
 * A client from `pool` with `onError` listening from the moment it is handed out. A pg-pool
 * (`connect(callback)`) calls back in the tick it hands the client out; any other pool's
 * promise is trusted to return clients that already have a listener (the cluster pool's do).
 */
function checkout(
  pool: { connect(): Promise<pg.PoolClient> },
  onError: (err: unknown) => void,
): Promise<pg.PoolClient> {
  if (!isPgPool(pool)) {
    return pool.connect().then((client) => {
      client.on('error', onError);
      return client;
    });
  }
  return new Promise((resolve, reject) => {
    pool.connect((err, client) => {
      if (err || !client) return reject(err ?? new Error('the pool handed out no client'));
      client.on('error', onError);
      resolve(client);
    });
  });
}

/**
 * Whether `pool` is a pg-pool, whose `connect(callback)` calls back in the tick it hands the
 * client out: this package's `pg.Pool`, or one from another copy of `pg` in the application
 * (same shape: a client list and a connect that takes a callback).
 */
function isPgPool(pool: object): pool is pg.Pool {
  if (pool instanceof pg.Pool) return true;
  const p = pool as { connect?: { length: number }; _clients?: unknown };
  return Array.isArray(p._clients) && typeof p.connect === 'function' && p.connect.length === 1;
}

/**
 * Runs `fn` inside a transaction. On a pool a client is checked out for it; on a client that
 * is already in a transaction (the caller's), a savepoint keeps our part atomic without
 * committing theirs.
 */
export async function withTransaction<T>(
  q: Queryable,
  fn: (tx: Queryable) => Promise<T>,
): Promise<T> {
  if (isConnectable(q)) {
    return withClient(q, async (client, markBroken) => {
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        // A client whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
        await client.query('ROLLBACK').catch(markBroken);
        throw err;
      }
    });
  }
  const inTx = isInTransaction(q);
  const savepoint = `pgcoord_${(savepointCounter = (savepointCounter + 1) % 1_000_000)}`;
  await q.query(inTx ? `SAVEPOINT ${savepoint}` : 'BEGIN');
  try {
    const result = await fn(q);
    await q.query(inTx ? `RELEASE SAVEPOINT ${savepoint}` : 'COMMIT');
    return result;
  } catch (err) {
    await q.query(inTx ? `ROLLBACK TO SAVEPOINT ${savepoint}` : 'ROLLBACK').catch(() => undefined);
    throw err;
  }
}

let savepointCounter = 0;

/**
 * Whether a client is inside a transaction block, from the last ReadyForQuery status that
 * node-postgres keeps (`I` idle, `T` in a transaction, `E` in a failed one). A client we cannot
 * inspect is assumed to be inside the caller's transaction, so our work nests in a savepoint.
 */
function isInTransaction(q: Queryable): boolean {
  const c = q as { getTransactionStatus?: () => string | null };
  const status = typeof c.getTransactionStatus === 'function' ? c.getTransactionStatus() : null;
  return status !== 'I';
}
