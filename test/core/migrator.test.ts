import { spawn } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  AttemptList,
  BREAKING_MARKER,
  RateLimiter,
  DatabaseNewerError,
  parseMigration,
  latestMigrationId,
  loadMigrations,
  migrate,
  renderMigration,
  ValidationError,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase({ migrate: false });

describe('migrate', () => {
  it('applies every migration once and records each', async () => {
    const first = await migrate(db.pool, { schema: 'm_once' });
    expect(first.version).toBe(latestMigrationId());
    expect(first.applied).toEqual(loadMigrations().map((m) => m.id));
    const again = await migrate(db.pool, { schema: 'm_once' });
    expect(again.applied).toEqual([]);
    const { rows } = await db.pool.query('SELECT id FROM m_once.migrations ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(loadMigrations().map((m) => m.id));
  });

  it('0009 applies over a schema that already has its rate-limit columns (0003 as first landed)', async () => {
    // The first release carried 0009's change inside an edited 0003: its databases have the
    // columns and the function already, and must still take 0009 cleanly.
    // The schema as that release left it: 0001-0008 applied and recorded, 0009's change already
    // in place but not recorded. (Rewinding the records of a fully migrated schema instead would
    // make every later migration prove it can run twice, which none of them promises.)
    await db.pool.query('CREATE SCHEMA m_landed');
    await db.pool.query(
      'CREATE TABLE m_landed.migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    for (const m of loadMigrations().filter((x) => x.id <= 9)) {
      await db.pool.query(renderMigration(m.sql, 'm_landed'));
      if (m.id <= 8) {
        await db.pool.query('INSERT INTO m_landed.migrations (id, name) VALUES ($1, $2)', [
          m.id,
          m.name,
        ]);
      }
    }
    expect((await migrate(db.pool, { schema: 'm_landed' })).applied).toEqual(
      loadMigrations()
        .map((m) => m.id)
        .filter((id) => id >= 9),
    );
    const limiter = new RateLimiter(db.pool, {
      schema: 'm_landed',
      algorithm: 'fixed-window',
      limit: 2,
      periodMs: 60_000,
    });
    const decisions = await Promise.all([1, 2, 3].map(() => limiter.consume('k')));
    expect(decisions.map((d) => d.allowed).sort()).toEqual([false, true, true]);
    // Several quotas take rate_limit_decide, the function 0009 replaces.
    const strict = new RateLimiter(db.pool, {
      schema: 'm_landed',
      algorithm: 'sliding-window',
      quotas: [
        { limit: 1, periodMs: 60_000 },
        { limit: 5, periodMs: 600_000 },
      ],
    });
    expect((await strict.consume('s')).allowed).toBe(true);
    expect((await strict.consume('s')).allowed).toBe(false);
  });

  it('escapes the schema name: quotes, capitals and spaces work; a "$" is refused', async () => {
    // A "$" could close the dollar-quoted function bodies the schema name is written into.
    await expect(migrate(db.pool, { schema: 'a$$b' })).rejects.toBeInstanceOf(ValidationError);
    const schema = 'We"ird Sch';
    await migrate(db.pool, { schema });
    const { rows } = await db.pool.query(
      'SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1',
      [schema],
    );
    expect(rows[0].n).toBe(1);
    expect(renderMigration('select {{schema}}.x, {{schema_literal}}', 'a\'b"c')).toBe(
      `select "a'b""c".x, 'a''b"c'`,
    );
    // `$$` and `$&` are patterns in a JavaScript replacement string: they arrive verbatim.
    expect(renderMigration('{{schema}} {{schema_literal}}', "$$'$&")).toBe(`"$$'$&" '$$''$&'`);
    // Every block works in it.
    const list = new AttemptList(db.pool, { schema });
    expect(await list.insertBatch('l', ['a', 'b'])).toBe(2);
    expect((await list.claim('l', { limit: 2, leaseMs: 1000 })).length).toBe(2);
  });

  it('refuses a database migrated by newer code', async () => {
    await migrate(db.pool, { schema: 'm_newer' });
    await db.pool.query(`INSERT INTO m_newer.migrations (id, name) VALUES (9999, 'future')`);
    const err = await migrate(db.pool, { schema: 'm_newer' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseNewerError);
    expect((err as DatabaseNewerError).code).toBe('PGCOORD_DATABASE_NEWER');
    expect((err as DatabaseNewerError).databaseVersion).toBe(9999);
  });

  it('goes on with a database newer than the code when no newer migration is breaking', async () => {
    await migrate(db.pool, { schema: 'm_compat' });
    const latest = latestMigrationId();
    await db.pool.query(
      `INSERT INTO m_compat.migrations (id, name, breaking) VALUES ($1, 'compatible', false)`,
      [latest + 1],
    );
    const warnings: unknown[][] = [];
    const result = await migrate(db.pool, {
      schema: 'm_compat',
      logger: { warn: (obj: object, msg?: string) => warnings.push([obj, msg]) },
    });
    expect(result).toEqual({ applied: [], version: latest + 1 });
    expect(warnings).toMatchObject([
      [
        { schema: 'm_compat', databaseVersion: latest + 1, codeVersion: latest },
        expect.any(String),
      ],
    ]);
    // The blocks migrate on first use: they work on it.
    const list = new AttemptList(db.pool, { schema: 'm_compat' });
    expect(await list.insertBatch('l', ['a'])).toBe(1);

    // One breaking migration among the newer ones is enough to refuse.
    await db.pool.query(
      `INSERT INTO m_compat.migrations (id, name, breaking) VALUES ($1, 'breaking', true)`,
      [latest + 2],
    );
    const err = await migrate(db.pool, { schema: 'm_compat' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseNewerError);
    expect((err as DatabaseNewerError).breakingMigrations).toEqual([latest + 2]);
    expect((err as Error).message).toMatch(`breaking: ${String(latest + 2).padStart(4, '0')}`);
  });

  it('records which migrations are breaking, also on a database migrated before the marker', async () => {
    await migrate(db.pool, { schema: 'm_marker' });
    // As the previous release left it: no breaking column.
    await db.pool.query('ALTER TABLE m_marker.migrations DROP COLUMN breaking');
    expect((await migrate(db.pool, { schema: 'm_marker' })).applied).toEqual([]);
    const { rows } = await db.pool.query(
      'SELECT id, breaking FROM m_marker.migrations ORDER BY id',
    );
    expect(rows).toEqual(loadMigrations().map((m) => ({ id: m.id, breaking: m.breaking })));

    // Without the column, a database that is newer does not say what is safe: refused.
    await db.pool.query('ALTER TABLE m_marker.migrations DROP COLUMN breaking');
    await db.pool.query(`INSERT INTO m_marker.migrations (id, name) VALUES (9999, 'unknown')`);
    const err = await migrate(db.pool, { schema: 'm_marker' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseNewerError);
    expect((err as DatabaseNewerError).breakingMigrations).toEqual([9999]);
  });

  it('reads the breaking-change marker from the first line of a migration file', () => {
    expect(parseMigration('0010_drop_x.sql', `${BREAKING_MARKER}\nDROP TABLE x;`)).toMatchObject({
      id: 10,
      name: 'drop_x',
      breaking: true,
    });
    expect(parseMigration('0011_add_y.sql', 'ALTER TABLE x ADD y int;').breaking).toBe(false);
    expect(() => parseMigration('11_add_y.sql', '')).toThrow(/not NNNN_name\.sql/);
    for (const m of loadMigrations()) expect(m.breaking).toBe(m.sql.startsWith(BREAKING_MARKER));
  });

  it('runs inside a caller client without committing for it', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await migrate(client, { schema: 'm_tx' });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const { rows } = await db.pool.query(`SELECT to_regnamespace('m_tx') AS ns`);
    expect(rows[0].ns).toBeNull();
  });

  it('two processes migrating at the same moment both succeed, schema applied once', async () => {
    const script = path.resolve('test/fixtures/migrate-process.ts');
    const runs = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<{ code: number | null; out: string }>((resolve) => {
            const child = spawn(process.execPath, ['--import', 'tsx', script, db.url, 'm_race'], {
              stdio: ['ignore', 'pipe', 'pipe'],
            });
            let out = '';
            child.stdout.on('data', (d: Buffer) => (out += d.toString()));
            child.stderr.on('data', (d: Buffer) => (out += d.toString()));
            child.on('exit', (code) => resolve({ code, out }));
          }),
      ),
    );
    for (const r of runs) expect(r.code, r.out).toBe(0);
    const applied = runs.flatMap((r) => JSON.parse(r.out.trim().split('\n').pop()!).applied);
    expect(applied.sort()).toEqual(
      loadMigrations()
        .map((m) => m.id)
        .sort(),
    );
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM m_race.migrations');
    expect(rows[0].n).toBe(loadMigrations().length);
  });

  it('a pool pointed at a dead server fails with a retryable ConnectionError', async () => {
    const pool = new pg.Pool({ host: '127.0.0.1', port: 1, user: 'postgres', database: 'x' });
    pool.on('error', () => undefined);
    try {
      const err = await migrate(pool).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('PGCOORD_CONNECTION');
      expect((err as { retryable?: boolean }).retryable).toBe(true);
    } finally {
      await pool.end();
    }
  });
});
