import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dollarQuote, quoteIdent, quoteLiteral } from '../../src/core/index.js';
import { Listener, loadMigrations, migrate, notify, ValidationError } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { sessionPools } from '../helpers/sessions.js';
import { waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase({ migrate: false });

const sessions = sessionPools(db);

/** Text made of pieces that open or end quotes, escapes, dollar quotes and comments. */
const hostileText = fc
  .array(
    fc.oneof(
      fc.constantFrom("'", '"', '`', '\\', "\\'", '\\\\', "E'", 'U&"', '$', '$$', '$pgcoord$'),
      fc.constantFrom('$pgcoord', 'pgcoord$', '$pgcoord_1$', '$a$', '\n', '\r', '--', '/*', '*/'),
      fc.string({ unit: 'grapheme', maxLength: 4 }),
      fc.string({ unit: 'binary', maxLength: 4 }),
    ),
    { maxLength: 10 },
  )
  .map((parts) => parts.join(''))
  .filter((x) => !x.includes('\u0000') && x.isWellFormed());

describe('escaping: the server reads back exactly what was quoted', () => {
  for (const setting of ['on', 'off'] as const) {
    it(`quoteLiteral, quoteIdent and dollarQuote round-trip (standard_conforming_strings = ${setting})`, async () => {
      const pool = sessions(setting);
      await fc.assert(
        fc.asyncProperty(hostileText, async (text) => {
          const ident = text === '' || Buffer.byteLength(text) > 63 ? 'x' : text;
          const res = await pool.query(
            `SELECT ${quoteLiteral(text)}::text AS literal, ${dollarQuote(text)}::text AS dollar,
                    1 AS ${quoteIdent(ident)}`,
          );
          expect(res.rows[0].literal).toBe(text);
          expect(res.rows[0].dollar).toBe(text);
          expect(res.fields[2]!.name).toBe(ident);
          // Inside a function body compiled later by a session with the other setting.
          const other = sessions(setting === 'on' ? 'off' : 'on');
          const fn = `pg_temp.lit_${setting}`;
          const client = await other.connect();
          try {
            await client.query(
              `CREATE OR REPLACE FUNCTION ${fn}() RETURNS text LANGUAGE plpgsql AS ${dollarQuote(
                `BEGIN RETURN ${quoteLiteral(text)}; END`,
              )}`,
            );
            const { rows } = await client.query(`SELECT ${fn}() AS v`);
            expect(rows[0].v).toBe(text);
          } finally {
            client.release();
          }
        }),
        {
          numRuns: 60,
          examples: [["a\\'b"], ['x$pgcoord'], ['$pgcoord$$pgcoord_1$'], ['\\'], ["'"]],
        },
      );
    });
  }

  it('picks a dollar tag the body cannot close, even one starting in its last characters', () => {
    expect(dollarQuote('x')).toBe('$pgcoord$x$pgcoord$');
    // `$pgcoord` + `$pgcoord$` would close at the body's own `$`.
    expect(dollarQuote('x$pgcoord')).toBe('$pgcoord_1$x$pgcoord$pgcoord_1$');
    expect(dollarQuote('$pgcoord$ $pgcoord_1$', 'pgcoord')).toBe(
      '$pgcoord_2$$pgcoord$ $pgcoord_1$$pgcoord_2$',
    );
    expect(() => dollarQuote('x', 'a$b')).toThrow(ValidationError);
  });

  it('writes E-literals only where a backslash needs one', () => {
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral('a\\b')).toBe("E'a\\\\b'");
    expect(quoteLiteral("a\\'b")).toBe("E'a\\\\''b'");
  });

  it('refuses a NUL with a ValidationError', () => {
    expect(() => quoteLiteral('a\u0000b')).toThrow(ValidationError);
    expect(() => quoteIdent('a\u0000b')).toThrow(ValidationError);
    expect(() => dollarQuote('a\u0000b')).toThrow(ValidationError);
  });

  it('no migration has a placeholder in a comment (a newline in the name would end it)', () => {
    for (const m of loadMigrations()) {
      for (const [i, line] of m.sql.split('\n').entries()) {
        const comment = line.indexOf('--');
        if (comment >= 0) expect(line.slice(comment), `${m.id} line ${i + 1}`).not.toContain('{{');
      }
      expect(m.sql, String(m.id)).not.toContain('/*');
    }
  });

  it('listener and notify: any channel, and a schema with quotes and backslashes, under "off"', async () => {
    const options = '-c standard_conforming_strings=off';
    const schema = "n\\'s";
    await migrate(sessions('off'), { schema });
    const listener = new Listener({ connection: { connectionString: db.url, options }, schema });
    const channels = ['a\\\'"b$$', '\n$pgcoord$ --', '日\\'];
    const big = 'x\\'.repeat(5000);
    // A large payload is fetched before delivery, so it may arrive after a later small one.
    const got: string[] = [];
    for (const c of channels) {
      listener.handle(c, (payload) => void got.push(`${c}: ${payload === big ? 'big' : payload}`));
    }
    await listener.start();
    try {
      for (const c of channels) {
        await notify(sessions('off'), c, c);
        await notify(sessions('off'), c, big, { largePayloads: true, schema });
      }
      await waitFor(() => got.length === 2 * channels.length);
      expect(got.sort()).toEqual(channels.flatMap((c) => [`${c}: ${c}`, `${c}: big`]).sort());
    } finally {
      await listener.stop();
    }
  });
});
