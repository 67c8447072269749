import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { withTransaction } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase({ migrate: false });

/** Terminates the backend of `client` and resolves once the client has seen its connection end. */
async function cut(client: pg.PoolClient): Promise<void> {
  const ended = new Promise((resolve) => client.once('end', resolve));
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
  await ended; // the 'error' event, if any, came before
}

describe('a held client whose connection is cut between statements', () => {
  // pg-pool takes its 'error' listener off a checked-out client: with none of ours, the cut
  // would be an unhandled 'error' event and end the process (seen in a consumer process).
  it('withTransaction fails the call, never the process, and the pool goes on', async () => {
    const pool = db.newPool({ max: 1 });
    const err = await withTransaction(pool, async (tx) => {
      await cut(tx as pg.PoolClient);
      return tx.query('SELECT 1');
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    // The broken client was destroyed, not handed out again.
    expect((await withTransaction(pool, (tx) => tx.query('SELECT 2 AS n'))).rows).toEqual([
      { n: 2 },
    ]);
  });
});
