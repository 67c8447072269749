import type pg from 'pg';
import { UnsupportedError } from '../core/index.js';
import { withTimeout, type ListenerConnection } from './listener-connection.js';

/** Which server process answered: its pid and its postmaster's start (pids repeat across servers). */
interface Backend {
  pid: number;
  started: string;
}

const WHO = `SELECT pg_backend_pid() AS pid, pg_postmaster_start_time()::text AS started`;

function backend(res: pg.QueryResult): Backend {
  const row = res.rows[0] as { pid: number; started: string };
  return { pid: row.pid, started: row.started };
}

const same = (a: Backend, b: Backend) => a.pid === b.pid && a.started === b.started;

export interface PoolerCheckOptions {
  /** Dials a second connection the same way the listener's was dialed. */
  dial: () => Promise<pg.Client>;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  signal: AbortSignal;
}

/**
 * Whether `session` goes through a pooler that hands its server connections from client to
 * client between transactions (PgBouncer's `pool_mode = transaction` or `statement`, and alike):
 * LISTEN there registers on whichever server connection ran it, which other clients then use,
 * and the listener receives a notification only when it happens to be back on that connection.
 * Returns the UnsupportedError to refuse with, or undefined.
 *
 * A direct connection costs one query: the server's pid equals the process id its handshake
 * announced (a pooler announces a cancel key of its own). Otherwise a second connection opens a
 * transaction while the listener's connection asks again which backend it is on. Through a
 * transaction pooler the second connection is handed the backend the listener just used (a
 * pooler reuses the most recent idle one), or, if not, the listener lands on another backend;
 * through a session pooler neither can happen. A check that cannot finish (second connection
 * refused, timeout, the listener's connection lost: the listener then reconnects and checks
 * again) assumes a session: it never blocks a listener that would work.
 */
export async function transactionPoolerProblem(
  session: ListenerConnection,
  o: PoolerCheckOptions,
): Promise<UnsupportedError | undefined> {
  let other: pg.Client | undefined;
  try {
    const first = backend(await session.command(WHO));
    if (first.pid === session.processId) return undefined;
    other = await withTimeout(
      o.dial(),
      o.connectTimeoutMs,
      (late) => {
        late.on('error', () => undefined);
        void late.end().catch(() => undefined);
      },
      o.signal,
    );
    other.on('error', () => undefined);
    const client = other;
    const run = (text: string) =>
      withTimeout(client.query(text), o.commandTimeoutMs, () => undefined, o.signal);
    await run('BEGIN');
    const held = backend(await run(WHO));
    const again = backend(await session.command(WHO));
    await run('ROLLBACK');
    if (!same(held, first) && same(again, first)) return undefined;
    const seen = same(held, first)
      ? `server process ${first.pid} served another client between two of its statements`
      : `two of its statements ran on server processes ${first.pid} and ${again.pid}`;
    return new UnsupportedError(
      'the Listener needs a session of its own, but its connection goes through a transaction-mode ' +
        `pooler (PgBouncer pool_mode = transaction, or alike): ${seen}. A LISTEN there receives ` +
        'only what arrives while the listener happens to hold that server connection. Point the ' +
        'Listener at the server itself or at a session-mode pool; notify() and the other blocks ' +
        'work through the pooler.',
    );
  } catch {
    return undefined;
  } finally {
    if (other) {
      const client = other;
      await withTimeout(client.end(), o.commandTimeoutMs, () => undefined).catch(() => {
        client.connection.stream.destroy();
      });
    }
  }
}
