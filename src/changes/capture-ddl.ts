import { createHash } from 'node:crypto';
import { NotFoundError, ValidationError } from '../core/index.js';
import { dollarQuote, quoteIdent, quoteLiteral, type Queryable } from '../core/index.js';
import { checkText, describe } from '../core/index.js';

// The trigger side of change capture: checking table references and operations, reading a
// table's columns and key from the catalog, and the DDL of the capture functions and triggers.
// ChangeCapture (change-capture.ts) runs this DDL; nothing here touches the database but
// describeTable's one catalog read.

/** A row operation that can be captured. */
export type ChangeOperation = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';

/** The operations captured when `track()` is given none. */
export const ALL_OPERATIONS: readonly ChangeOperation[] = [
  'INSERT',
  'UPDATE',
  'DELETE',
  'TRUNCATE',
];

/** A table: a bare name (schema `public`) or `{ schema, name }`. Names are taken verbatim. */
export type TableRef = string | { schema: string; name: string };

/** The longest name the catalog holds, in bytes. */
export const MAX_NAME_BYTES = 63;

/** Validates a table reference; a bare name means schema `public`. */
export function checkTable(table: unknown): { schema: string; name: string } {
  if (typeof table === 'string') return { schema: 'public', name: checkName('table', table) };
  if (typeof table !== 'object' || table === null || Array.isArray(table)) {
    throw new ValidationError(
      'table',
      `must be a name or { schema, name }, got ${describe(table)}`,
    );
  }
  const t = table as { schema?: unknown; name?: unknown };
  return { schema: checkName('table.schema', t.schema), name: checkName('table.name', t.name) };
}

/** Any name the catalog can hold: every character but NUL, at most 63 bytes. */
export function checkName(argument: string, value: unknown): string {
  return checkText(argument, value, { maxBytes: MAX_NAME_BYTES });
}

export function checkOperations(value: unknown): ChangeOperation[] {
  if (value === undefined) return [...ALL_OPERATIONS];
  if (!Array.isArray(value) || value.length === 0) {
    throw new ValidationError('options.operations', 'must be a non-empty array of operations');
  }
  const out: ChangeOperation[] = [];
  for (const [i, op] of value.entries()) {
    if (!ALL_OPERATIONS.includes(op as ChangeOperation)) {
      throw new ValidationError(
        `options.operations[${i}]`,
        `must be one of ${ALL_OPERATIONS.join(', ')}, got ${describe(op)}`,
      );
    }
    if (!out.includes(op as ChangeOperation)) out.push(op as ChangeOperation);
  }
  return out;
}

/** What the capture DDL needs to know of a table, read from the catalog by {@link describeTable}. */
export interface TableInfo {
  /** The table's oid (names the capture functions). */
  oid: number;
  /** Its columns, in column order. */
  columns: string[];
  /** Its primary key columns, in key order; empty without a key. */
  pk: string[];
  /** Whether it is a partitioned table (its capture triggers are row-level). */
  partitioned: boolean;
}

export async function describeTable(
  q: Queryable,
  ref: { schema: string; name: string },
): Promise<TableInfo> {
  const { rows } = await q.query<{
    oid: string;
    columns: string[];
    pk: string[];
    partitioned: boolean;
  }>(
    `SELECT c.oid::int8::text AS oid, c.relkind = 'p' AS partitioned,
            ARRAY(SELECT attname::text FROM pg_attribute
                   WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum) AS columns,
            ARRAY(SELECT a.attname::text FROM pg_index i
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                   WHERE i.indrelid = c.oid AND i.indisprimary
                   ORDER BY array_position(i.indkey::int2[], a.attnum)) AS pk
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = $2::text AND c.relkind IN ('r', 'p')`,
    [ref.schema, ref.name],
  );
  const r = rows[0];
  if (!r) {
    throw new NotFoundError(`no table ${quoteIdent(ref.schema)}.${quoteIdent(ref.name)}`);
  }
  return { oid: Number(r.oid), columns: r.columns, pk: r.pk, partitioned: r.partitioned };
}

/** Trigger names carry a hash of pgcoord's schema, so two pgcoord schemas can track one table. */
function triggerName(schema: string, op: ChangeOperation): string {
  const h = createHash('sha1').update(schema).digest('hex').slice(0, 8);
  return `pgcoord_capture_${h}_${op.toLowerCase()}`;
}

function functionName(oid: number, op: ChangeOperation): string {
  return `capture_${oid}_${op.toLowerCase()}`;
}

/**
 * DDL for one table: a small PL/pgSQL function per operation with the table's names and key
 * columns written in as constants (no per-row catalog lookups or dynamic SQL), and its trigger.
 * INSERT and DELETE are statement-level with transition tables: a 10,000-row statement costs one
 * INSERT ... SELECT. UPDATE is row-level, because only a row trigger pairs OLD with NEW.
 */
export function captureDdl(
  schema: string,
  ref: { schema: string; name: string },
  info: TableInfo,
  operations: ChangeOperation[],
  columns: string[] | null,
): string[] {
  const s = quoteIdent(schema);
  const table = `${quoteIdent(ref.schema)}.${quoteIdent(ref.name)}`;
  // `n.*`, not `n`: a bare alias would mean a column of that name if the table has one.
  const whole = (alias: string) => (alias === 'NEW' || alias === 'OLD' ? alias : `${alias}.*`);
  const rowJson = (alias: string) =>
    columns === null
      ? `to_jsonb(${whole(alias)})`
      : `jsonb_build_object(${columns.map((c) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(c)}`).join(', ')})`;
  const pkJson = (alias: string) =>
    info.pk.length === 0
      ? `to_jsonb(${whole(alias)})`
      : `jsonb_build_object(${info.pk.map((c) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(c)}`).join(', ')})`;
  const head = `INSERT INTO ${s}.changes (schema_name, table_name, op, pk, old, new)`;
  const names = `${quoteLiteral(ref.schema)}, ${quoteLiteral(ref.name)}`;
  // A partitioned table runs an UPDATE that moves a row to another partition as a DELETE and an
  // INSERT that fire only ROW triggers: there INSERT and DELETE must be row-level to see it.
  const rowLevel = info.partitioned;
  const bodies: Record<ChangeOperation, string> = {
    INSERT: rowLevel
      ? `${head} VALUES (${names}, 'INSERT', ${pkJson('NEW')}, NULL, ${rowJson('NEW')});`
      : `${head} SELECT ${names}, 'INSERT', ${pkJson('n')}, NULL, ${rowJson('n')} FROM pgcoord_new n;`,
    DELETE: rowLevel
      ? `${head} VALUES (${names}, 'DELETE', ${pkJson('OLD')}, ${rowJson('OLD')}, NULL);`
      : `${head} SELECT ${names}, 'DELETE', ${pkJson('o')}, ${rowJson('o')}, NULL FROM pgcoord_old o;`,
    UPDATE: `${head} VALUES (${names}, 'UPDATE', ${pkJson('NEW')}, ${rowJson('OLD')}, ${rowJson('NEW')});`,
    TRUNCATE: `${head} VALUES (${names}, 'TRUNCATE', NULL, NULL, NULL);`,
  };
  const when: Record<ChangeOperation, string> = {
    INSERT: rowLevel
      ? 'AFTER INSERT ON %T FOR EACH ROW'
      : 'AFTER INSERT ON %T REFERENCING NEW TABLE AS pgcoord_new FOR EACH STATEMENT',
    DELETE: rowLevel
      ? 'AFTER DELETE ON %T FOR EACH ROW'
      : 'AFTER DELETE ON %T REFERENCING OLD TABLE AS pgcoord_old FOR EACH STATEMENT',
    UPDATE: 'AFTER UPDATE ON %T FOR EACH ROW',
    TRUNCATE: 'AFTER TRUNCATE ON %T FOR EACH STATEMENT',
  };
  const out: string[] = [];
  const unused = ALL_OPERATIONS.filter((op) => !operations.includes(op));
  out.push(...dropDdl(schema, ref, info.oid, unused));
  for (const op of operations) {
    const fn = `${s}.${quoteIdent(functionName(info.oid, op))}`;
    // Every name in the body is a quoted identifier or literal, and the body's dollar tag is
    // one that does not occur in it: nothing in a name, the catalog's key columns included,
    // can end the body early, and the literals read the same in whichever session compiles it.
    const body = `
BEGIN
  ${bodies[op]}
  RETURN NULL;
END
`;
    out.push(
      `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuote(body, 'pgcoord_capture')}`,
    );
    const trig = quoteIdent(triggerName(schema, op));
    out.push(`DROP TRIGGER IF EXISTS ${trig} ON ${table}`);
    // A replacer function: in a replacement string `$$`, `$&`... are patterns, and a quoted
    // name may contain them.
    const on = when[op].replace('%T', () => table);
    out.push(`CREATE TRIGGER ${trig} ${on} EXECUTE FUNCTION ${fn}()`);
  }
  return out;
}

export function dropDdl(
  schema: string,
  ref: { schema: string; name: string },
  oid: number,
  operations: readonly ChangeOperation[],
): string[] {
  const table = `${quoteIdent(ref.schema)}.${quoteIdent(ref.name)}`;
  return operations.flatMap((op) => [
    `DROP TRIGGER IF EXISTS ${quoteIdent(triggerName(schema, op))} ON ${table}`,
    `DROP FUNCTION IF EXISTS ${quoteIdent(schema)}.${quoteIdent(functionName(oid, op))}()`,
  ]);
}
