import { describe, expect, it } from 'vitest';
import {
  ConnectionError,
  DatabaseError,
  InternalError,
  ValidationError,
  latestMigrationId,
} from '../../src/index.js';
import { StatementRunner, runStatement } from '../../src/core/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase({ migrate: false });

/** The first attempt kills its own backend (a real admin shutdown, SQLSTATE 57P01); later ones answer. */
function dyingOnce(attempts: string[]) {
  return async (q: { query: (sql: string) => Promise<{ rows: Array<{ n: number }> }> }) => {
    attempts.push(`attempt ${attempts.length + 1}`);
    if (attempts.length === 1) await q.query('SELECT pg_terminate_backend(pg_backend_pid())');
    return (await q.query('SELECT 7 AS n')).rows[0]!.n;
  };
}

describe('StatementRunner', () => {
  it('migrates the schema once, before the first statement', async () => {
    const runner = new StatementRunner(db.pool, 's_once');
    const first = await runner.run((q) =>
      q.query<{ v: number }>('SELECT max(id) AS v FROM s_once.migrations'),
    );
    expect(first.rows[0]!.v).toBe(latestMigrationId());
    // Once migrated, the table of migrations is not read again: drop it and statements still run.
    await db.pool.query('DROP TABLE s_once.migrations');
    expect((await runner.run((q) => q.query('SELECT 1 AS one'))).rows[0]?.one).toBe(1);
  });

  it('converts every failure: a refusal, a bug, a bad tx before any SQL', async () => {
    const runner = new StatementRunner(db.pool, 's_errors');
    const refusal = await runner
      .run((q) => q.query('SELECT * FROM no_such_table'))
      .catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(DatabaseError);
    expect((refusal as DatabaseError).sqlState).toBe('42P01');
    const bug = await runner
      .run(async () => {
        throw new TypeError('undefined is not a function');
      })
      .catch((e: unknown) => e);
    expect(bug).toBeInstanceOf(InternalError);
    let ran = false;
    const badTx = await runner
      .run(
        async (q) => {
          ran = true;
          return q.query('SELECT 1');
        },
        { tx: { not: 'a client' } },
      )
      .catch((e: unknown) => e);
    expect(badTx).toBeInstanceOf(ValidationError);
    expect((badTx as ValidationError).argument).toBe('options.tx');
    expect(ran).toBe(false);
  });

  it('retries an idempotent statement after a real broken connection', async () => {
    const attempts: string[] = [];
    const runner = new StatementRunner(db.newPool({ max: 1 }), 's_retry');
    expect(await runner.run(dyingOnce(attempts), { idempotent: true })).toBe(7);
    expect(attempts).toEqual(['attempt 1', 'attempt 2']);
  });

  it('never runs a non-idempotent statement twice, nor one in the caller transaction', async () => {
    const pool = db.newPool({ max: 2 });
    const runner = new StatementRunner(pool, 's_no_retry');
    await runner.ready();
    const attempts: string[] = [];
    await expect(runner.run(dyingOnce(attempts))).rejects.toBeInstanceOf(ConnectionError);
    expect(attempts).toEqual(['attempt 1']);

    const client = await pool.connect();
    let broken: Error | undefined;
    client.on('error', (e) => (broken = e));
    try {
      const inTx: string[] = [];
      await expect(
        runner.run(dyingOnce(inTx), { tx: client, idempotent: true }),
      ).rejects.toBeInstanceOf(ConnectionError);
      expect(inTx).toEqual(['attempt 1']);
      broken ??= new Error('terminated');
    } finally {
      client.release(broken);
    }

    // A block built on a single client cannot reconnect: no retry either.
    const single = await pool.connect();
    single.on('error', () => undefined);
    try {
      const onClient: string[] = [];
      await expect(
        new StatementRunner(single, 's_no_retry').run(dyingOnce(onClient), { idempotent: true }),
      ).rejects.toBeInstanceOf(ConnectionError);
      expect(onClient).toEqual(['attempt 1']);
    } finally {
      single.release(true);
    }
  });

  it('runStatement is the same for a one-off statement', async () => {
    const { rows } = await runStatement(db.pool, 's_once_off', (q) => q.query('SELECT 2 AS two'));
    expect(rows[0]?.two).toBe(2);
  });
});
