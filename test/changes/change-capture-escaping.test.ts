import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChangeCapture, quoteIdent, ValidationError } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { sessionPools, type SessionSetting } from '../helpers/sessions.js';

const db = useTestDatabase();

/**
 * Sessions that parse SQL differently: `standard_conforming_strings = off` reads a backslash in
 * a plain '' literal as an escape; `check_function_bodies = off` creates a function without
 * parsing its body (so a body that ends early runs what follows it as statements).
 */
type Setting = SessionSetting;
// The most dangerous first: before the fix, tracking there ran the injected DROP.
const settings: Setting[] = ['off-nocheck', 'off', 'on'];
const sessions = sessionPools(db);

async function lastChangeId(): Promise<string> {
  const { rows } = await db.pool.query(
    `SELECT coalesce(max(id), 0)::text AS id FROM pgcoord.changes`,
  );
  return rows[0].id;
}

async function changesSince(from: string) {
  const { rows } = await db.pool.query(
    `SELECT schema_name, table_name, op, pk, old, new FROM pgcoord.changes WHERE id > $1 ORDER BY id`,
    [from],
  );
  return rows;
}

/** Pieces that end or open quotes, dollar quotes, escapes and comments in one setting or another. */
const hostile = fc.oneof(
  fc.constantFrom(
    "'",
    "''",
    '"',
    '""',
    '`',
    '$',
    '$$',
    '$1',
    '$pgcoord_capture$',
    '$pgcoord$',
    '$pgcoord_1$',
    '$fn$',
    '$a$',
    '\\',
    "\\'",
    '\\\\',
    '\\"',
    '\\$',
    "E'",
    'U&"',
    '\n',
    '\r\n',
    '\t',
    ';',
    '--',
    '/*',
    '*/',
    ')',
    '日',
    '🙂',
    'é',
    ' ',
  ),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }),
);

/** A name made of hostile pieces after a prefix that keeps it clear of real names. */
function hostileName(prefix: string) {
  return fc
    .array(hostile, { minLength: 1, maxLength: 8 })
    .map((parts) => prefix + parts.join(''))
    .filter((x) => !x.includes('\u0000') && x.isWellFormed() && Buffer.byteLength(x) <= 63);
}

describe('change capture: names in generated SQL', () => {
  it('the exploit of issue 12: a key column that closes the dollar quote runs nothing', async () => {
    const key = "x',$pgcoord_capture$;DROP TABLE IF EXISTS victim;SELECT ";
    await db.pool.query('CREATE TABLE victim (id int)');
    await db.pool.query(`CREATE TABLE exploited (${quoteIdent(key)} text PRIMARY KEY, v int)`);
    for (const setting of settings) {
      await new ChangeCapture(sessions(setting)).track('exploited');
      const { rows } = await db.pool.query(`SELECT to_regclass('public.victim') IS NOT NULL AS ok`);
      expect(rows[0].ok, setting).toBe(true);
    }
    // The trigger functions were created by the last track (check_function_bodies = off): they
    // run, and the captured changes carry the key under its real name.
    const from = await lastChangeId();
    for (const setting of settings) {
      const w = sessions(setting);
      await w.query(`INSERT INTO exploited VALUES ($1, 1)`, [`k-${setting}`]);
      await w.query(`UPDATE exploited SET v = 2 WHERE ${quoteIdent(key)} = $1`, [`k-${setting}`]);
      await w.query(`DELETE FROM exploited WHERE ${quoteIdent(key)} = $1`, [`k-${setting}`]);
    }
    const changes = await changesSince(from);
    expect(changes.map((c) => [c.op, c.pk])).toEqual(
      settings.flatMap((setting) =>
        ['INSERT', 'UPDATE', 'DELETE'].map((op) => [op, { [key]: `k-${setting}` }]),
      ),
    );
    expect(changes[0]).toMatchObject({
      schema_name: 'public',
      table_name: 'exploited',
      old: null,
      new: { [key]: 'k-off-nocheck', v: 1 },
    });
    const { rows } = await db.pool.query(`SELECT to_regclass('public.victim') IS NOT NULL AS ok`);
    expect(rows[0].ok).toBe(true);
  });

  it('names holding the dollar tag are tracked, not refused', async () => {
    const schema = 'S $pgcoord_capture$';
    const table = 't$pgcoord_capture$';
    const column = 'c$pgcoord_capture$';
    const q = `${quoteIdent(schema)}.${quoteIdent(table)}`;
    await db.pool.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
    await db.pool.query(`CREATE TABLE ${q} (id int PRIMARY KEY, ${quoteIdent(column)} text)`);
    await new ChangeCapture(db.pool).track({ schema, name: table }, { columns: [column] });
    const from = await lastChangeId();
    await db.pool.query(`INSERT INTO ${q} VALUES (1, '$pgcoord_capture$')`);
    expect(await changesSince(from)).toEqual([
      {
        schema_name: schema,
        table_name: table,
        op: 'INSERT',
        pk: { id: 1 },
        old: null,
        new: { [column]: '$pgcoord_capture$' },
      },
    ]);
  });

  it('fuzz: any schema, table, key column and columns, tracked and written under either setting', async () => {
    const capture = (s: Setting) => new ChangeCapture(sessions(s));
    const names = fc
      .tuple(hostileName('Fz"'), hostileName("t'"), hostileName('k\\'), hostileName('c$'))
      .filter(([, , k, c]) => k !== c);
    await fc.assert(
      fc.asyncProperty(
        names,
        fc.constantFrom(...settings),
        fc.constantFrom(...settings),
        fc.boolean(),
        async ([schema, table, key, column], trackedIn, writtenIn, whole) => {
          const q = `${quoteIdent(schema)}.${quoteIdent(table)}`;
          await db.pool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
          await db.pool.query(`DROP TABLE IF EXISTS ${q}`);
          await db.pool.query(
            `CREATE TABLE ${q} (${quoteIdent(key)} text PRIMARY KEY, ${quoteIdent(column)} text, other int)`,
          );
          const tracked = await capture(trackedIn).track(
            { schema, name: table },
            whole ? {} : { columns: [column] },
          );
          expect(tracked).toMatchObject({ schema, name: table, pkColumns: [key] });
          const from = await lastChangeId();
          const w = sessions(writtenIn);
          const k = `${key}\\'$$`;
          await w.query(`INSERT INTO ${q} VALUES ($1, $2, 1)`, [k, column]);
          await w.query(
            `UPDATE ${q} SET ${quoteIdent(column)} = $2 WHERE ${quoteIdent(key)} = $1`,
            [k, schema],
          );
          await w.query(`DELETE FROM ${q}`);
          const row = (c: string) =>
            whole ? { [key]: k, [column]: c, other: 1 } : { [column]: c };
          const pk = { [key]: k };
          const names = { schema_name: schema, table_name: table };
          expect(await changesSince(from)).toEqual([
            { ...names, op: 'INSERT', pk, old: null, new: row(column) },
            { ...names, op: 'UPDATE', pk, old: row(column), new: row(schema) },
            { ...names, op: 'DELETE', pk, old: row(schema), new: null },
          ]);
          expect(await capture(writtenIn).untrack({ schema, name: table })).toBe(true);
          await db.pool.query(`DROP TABLE ${q}`);
        },
      ),
      {
        numRuns: 40,
        examples: [
          [
            ['Fz"\\', "t'\\'", "k\\',$pgcoord_capture$;SELECT ", 'c$pgcoord_capture$'],
            'off-nocheck',
            'off',
            false,
          ],
          [['Fz"$$', "t'\\\\", 'k\\\n$$', "c$'\\"], 'on', 'off', true],
        ],
      },
    );
  });

  it('refuses a NUL in any name with a ValidationError, before SQL', async () => {
    const capture = new ChangeCapture(db.pool);
    const withNul = fc
      .tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
      .map(([a, b]) => `${a}\u0000${b}`);
    await fc.assert(
      fc.asyncProperty(withNul, async (bad) => {
        await expect(capture.track(bad)).rejects.toBeInstanceOf(ValidationError);
        await expect(capture.track({ schema: bad, name: 't' })).rejects.toBeInstanceOf(
          ValidationError,
        );
        await expect(capture.track({ schema: 'public', name: bad })).rejects.toBeInstanceOf(
          ValidationError,
        );
        await expect(capture.track('victim', { columns: [bad] })).rejects.toBeInstanceOf(
          ValidationError,
        );
        await expect(capture.untrack(bad)).rejects.toBeInstanceOf(ValidationError);
      }),
      { numRuns: 20 },
    );
  });
});
