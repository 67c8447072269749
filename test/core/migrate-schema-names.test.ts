import fc from 'fast-check';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  AttemptList,
  ChangeCapture,
  KvStore,
  LeaseManager,
  loadMigrations,
  migrate,
  quoteIdent,
  RateLimiter,
  renderMigration,
  ValidationError,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { sessionPools, type SessionSetting } from '../helpers/sessions.js';

const db = useTestDatabase({ migrate: false });

/** `standard_conforming_strings` of a session: `off` reads a backslash in a '' literal as an escape. */
type Setting = Exclude<SessionSetting, 'off-nocheck'>;
const sessions = sessionPools(db);
const other = (s: Setting): Setting => (s === 'on' ? 'off' : 'on');

/** Every relation and function in a schema, by name and kind. */
async function objectsIn(schema: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ o: string }>(
    `SELECT c.relkind::text || ' ' || c.relname AS o FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
     UNION ALL
     SELECT 'f ' || p.proname FROM pg_proc p
       JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
     ORDER BY 1`,
    [schema],
  );
  return rows.map((r) => r.o);
}

async function schemas(): Promise<string[]> {
  const { rows } = await db.pool.query<{ nspname: string }>(
    'SELECT nspname FROM pg_namespace ORDER BY nspname',
  );
  return rows.map((r) => r.nspname);
}

/** Runs each block's main path in `schema` through `pool`: the SQL functions and defaults the migrations wrote. */
async function useEveryBlock(pool: pg.Pool, schema: string): Promise<void> {
  const u = Math.random().toString(36).slice(2);
  const list = new AttemptList(pool, { schema });
  expect(await list.insertBatch(u, ['a', 'b'])).toBe(2);
  // list_complete_and_claim carries the schema as a literal in its body.
  const claims = await list.claim(u, { limit: 2, leaseMs: 60_000 });
  expect(claims.map((c) => c.item).sort()).toEqual(['a', 'b']);
  expect((await list.complete(u, claims)).count).toBe(2);

  const kv = new KvStore(pool, { schema });
  await kv.set('k', 'v');
  expect(await kv.get('k')).toBe('v');

  // Two quotas take rate_limit_decide, a PL/pgSQL function of the schema.
  const limiter = new RateLimiter(pool, {
    schema,
    algorithm: 'sliding-window',
    quotas: [
      { limit: 1, periodMs: 60_000 },
      { limit: 5, periodMs: 600_000 },
    ],
  });
  expect((await limiter.consume(u)).allowed).toBe(true);
  expect((await limiter.consume(u)).allowed).toBe(false);

  const leases = new LeaseManager(pool, { schema });
  const lease = await leases.acquire(u, { ttlMs: 60_000 });
  expect(lease).toBeDefined();
  await leases.release(lease!);

  // changes.id defaults to the schema's own sequence (0006 names it by a literal).
  const t = `cap_${u}`;
  await pool.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
  await new ChangeCapture(pool, { schema }).track(t);
  await pool.query(`INSERT INTO ${t} VALUES (1)`);
  const { rows } = await pool.query(
    `SELECT table_name, pk FROM ${quoteIdent(schema)}.changes ORDER BY id DESC LIMIT 1`,
  );
  expect(rows).toEqual([{ table_name: t, pk: { id: 1 } }]);
  await pool.query(`DROP TABLE ${t}`);
}

describe('migrate: schema names under either standard_conforming_strings', () => {
  let reference: string[] = [];
  async function referenceObjects(): Promise<string[]> {
    if (reference.length === 0) {
      await migrate(db.pool, { schema: 'm_reference' });
      reference = await objectsIn('m_reference');
    }
    return reference;
  }

  it('migrates into exactly the named schema, and every block works in it from either setting', async () => {
    const reference = await referenceObjects();
    expect(reference).toContain('r list_items');
    for (const schema of ['a\\b', "a\\'b", "a'b", '{{schema_literal}}', 'x{{schema}}"\\']) {
      for (const setting of ['off', 'on'] as const) {
        const name = `${schema}_${setting}`;
        const before = await schemas();
        await migrate(sessions(setting), { schema: name });
        const created = (await schemas()).filter((s) => !before.includes(s));
        expect(created, name).toEqual([name]);
        expect(await objectsIn(name), name).toEqual(reference);
        await useEveryBlock(sessions(setting), name);
        await useEveryBlock(sessions(other(setting)), name);
      }
    }
  });

  it('fuzz: names of quotes, backslashes, newlines and unicode', async () => {
    const piece = fc.oneof(
      fc.constantFrom("'", '"', '`', '\\', "\\'", '\\\\', '\n', '\r', '\t', ';', '--', '/*'),
      fc.constantFrom('{{schema}}', '{{schema_literal}}', 'E', 'U&', '日', '🙂', ' '),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 3 }),
    );
    const name = fc
      .array(piece, { minLength: 1, maxLength: 6 })
      .map((p) => `fz${p.join('')}`)
      .filter(
        (x) =>
          !x.includes('\u0000') &&
          !x.includes('$') &&
          x.isWellFormed() &&
          Buffer.byteLength(x) <= 63,
      );
    const reference = await referenceObjects();
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(name, fc.constantFrom<Setting>('on', 'off'), async (schema, setting) => {
        if (seen.has(schema)) return;
        seen.add(schema);
        await migrate(sessions(setting), { schema });
        expect(await objectsIn(schema)).toEqual(reference);
        const list = new AttemptList(sessions(other(setting)), { schema });
        await list.insertBatch('l', ['x']);
        expect((await list.claim('l', { limit: 1, leaseMs: 1000 })).map((c) => c.item)).toEqual([
          'x',
        ]);
      }),
      { numRuns: 8 },
    );
  });

  it('repairs function bodies an older release wrote into a schema whose name has a backslash', async () => {
    // The rendering of releases before E'' literals: quotes doubled, backslashes left as they are.
    const schema = 'old\\style';
    const oldRender = (sql: string) =>
      sql
        .replaceAll('{{schema}}', () => quoteIdent(schema))
        .replaceAll('{{schema_literal}}', () => `'${schema.replaceAll("'", "''")}'`);
    const on = sessions('on');
    const s = quoteIdent(schema);
    await on.query(`CREATE SCHEMA ${s}`);
    await on.query(
      `CREATE TABLE ${s}.migrations (id integer PRIMARY KEY, name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const old = loadMigrations().filter((m) => m.id <= 10);
    for (const m of old) {
      await on.query(oldRender(m.sql));
      await on.query(`INSERT INTO ${s}.migrations (id, name) VALUES ($1, $2)`, [m.id, m.name]);
    }
    // What the repair is for: such a body names the schema "oldstyle" in sessions with
    // standard_conforming_strings = off. (Called directly: a block would migrate first.)
    const claimSql = `SELECT * FROM ${s}.list_complete_and_claim('l', '{}', '{}', '{}', 1, 1000, 5)`;
    await on.query(claimSql);
    await expect(sessions('off').query(claimSql)).rejects.toThrow(/"oldstyle"/);
    const result = await migrate(sessions('off'), { schema });
    expect(result.applied).toEqual(
      loadMigrations()
        .filter((m) => m.id > 10)
        .map((m) => m.id),
    );
    expect(await objectsIn(schema)).toEqual(await referenceObjects());
    await sessions('off').query(claimSql);
    const list = (setting: Setting) => new AttemptList(sessions(setting), { schema });
    await list('on').insertBatch('l', ['a', 'b']);
    for (const setting of ['off', 'on'] as const) {
      const claims = await list(setting).claim('l', { limit: 1, leaseMs: 60_000 });
      expect(claims.length, setting).toBe(1);
    }
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = to_regnamespace($1)
          AND strpos(prosrc, $2) > 0`,
      [s, `'${schema}'`],
    );
    expect(rows[0].n).toBe(0);
  });

  it('refuses a NUL or a "$" in the schema name with a ValidationError', async () => {
    for (const schema of ['a\u0000b', 'a$$b', '$fn$', 'a$b']) {
      await expect(migrate(db.pool, { schema })).rejects.toBeInstanceOf(ValidationError);
    }
  });

  it('renders each placeholder once: a placeholder inside the schema name stays text', () => {
    expect(renderMigration('{{schema}} {{schema_literal}}', '{{schema_literal}}"')).toBe(
      `"{{schema_literal}}""" '{{schema_literal}}"'`,
    );
    expect(renderMigration('{{schema_literal}}', 'a\\b')).toBe(`E'a\\\\b'`);
    expect(renderMigration('{{schema_literal}}', "a\\'b")).toBe(`E'a\\\\''b'`);
  });
});
