import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { coerceError, DatabaseNewerError, MigrationError } from './errors.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent, quoteLiteral } from './identifier.js';
import { isConnectable, withClient, withTransaction, type Queryable } from './queryable.js';

/** One numbered file of `sql/`. */
export interface Migration {
  id: number;
  name: string;
  /** SQL with `{{schema}}` (quoted identifier) and `{{schema_literal}}` (string literal) placeholders. */
  sql: string;
}

export interface MigrateOptions {
  /** Schema holding every pgcoord table. Default `pgcoord`. */
  schema?: string;
}

export interface MigrateResult {
  /** Ids of the migrations this call applied (empty when the schema was already current). */
  applied: number[];
  /** The schema's migration id afterwards. */
  version: number;
}

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

let cached: Migration[] | undefined;

/** The migrations shipped with this package, in order. */
export function loadMigrations(): Migration[] {
  if (cached) return cached;
  const dir = findSqlDir();
  const list = fs
    .readdirSync(dir)
    .map((file) => ({ file, m: FILE_PATTERN.exec(file) }))
    .filter((x): x is { file: string; m: RegExpExecArray } => x.m !== null)
    .map(({ file, m }) => ({
      id: Number(m[1]),
      name: m[2] as string,
      sql: fs.readFileSync(path.join(dir, file), 'utf8'),
    }))
    .sort((a, b) => a.id - b.id);
  for (let i = 1; i < list.length; i++) {
    if (list[i]!.id === list[i - 1]!.id) {
      throw new MigrationError(`two migrations share the number ${list[i]!.id}`);
    }
  }
  cached = list;
  return list;
}

/** Newest migration id this code knows. */
export function latestMigrationId(): number {
  const list = loadMigrations();
  return list.length === 0 ? 0 : list[list.length - 1]!.id;
}

function findSqlDir(): string {
  // src/db/migrator.ts in development, dist/src/db/migrator.js when built: walk up to sql/.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'sql');
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new MigrationError('cannot find the sql/ folder of the pgcoord package');
}

/**
 * Substitutes the schema placeholders of a migration, in one pass (a placeholder spelled inside
 * the schema name stays text). The literal reads the same under either standard_conforming_strings,
 * in the migrating session and in the later sessions that compile the function bodies it lands in.
 * A `$` in the name is refused ({@link checkSchemaName}): the name also lands inside dollar-quoted
 * bodies, whose tags are fixed in the append-only files.
 */
export function renderMigration(sql: string, schema: string): string {
  const ident = quoteIdent(schema);
  const literal = quoteLiteral(schema);
  // A replacer function: a schema name may hold `$$`, `$&`..., patterns in a replacement string.
  return sql.replace(/\{\{(schema|schema_literal)\}\}/g, (_m, which: string) =>
    which === 'schema' ? ident : literal,
  );
}

/** Advisory lock key for migrating one schema, the same in every process. */
const LOCK_SQL = `SELECT pg_advisory_xact_lock(hashtextextended('pgcoord.migrate:' || $1::text, 0))`;

/**
 * Brings `schema` up to date. Safe to call from many processes at once: each step runs in its
 * own transaction under an advisory lock and is recorded in that same transaction, so a step is
 * applied exactly once. Refuses ({@link DatabaseNewerError}) a database migrated by newer code.
 *
 * @example
 * await migrate(pool); // schema "pgcoord"
 * await migrate(pool, { schema: 'coord' });
 */
export async function migrate(q: Queryable, options: MigrateOptions = {}): Promise<MigrateResult> {
  const schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const migrations = loadMigrations();
  const latest = latestMigrationId();
  try {
    if (isConnectable(q)) {
      return await withClient(q, (client) => runMigrations(client, schema, migrations, latest));
    }
    return await runMigrations(q, schema, migrations, latest);
  } catch (err) {
    if (err instanceof DatabaseNewerError || err instanceof MigrationError) throw err;
    const e = coerceError(err);
    if (e.retryable) throw e;
    throw new MigrationError(`migrating schema "${schema}" failed: ${e.message}`, { cause: e });
  }
}

async function runMigrations(
  client: Queryable,
  schema: string,
  migrations: Migration[],
  latest: number,
): Promise<MigrateResult> {
  const s = quoteIdent(schema);
  const current = await currentVersion(client, schema);
  if (current !== undefined && current > latest) {
    throw new DatabaseNewerError(schema, current, latest);
  }
  if (current === latest) return { applied: [], version: latest };

  const done = await withRetryOnCatalogClash(() =>
    withTransaction(client, async (tx) => {
      await tx.query(LOCK_SQL, [schema]);
      await tx.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await tx.query(
        `CREATE TABLE IF NOT EXISTS ${s}.migrations (
           id integer PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      const { rows } = await tx.query<{ id: number }>(`SELECT id FROM ${s}.migrations`);
      return new Set(rows.map((r) => r.id));
    }),
  );
  const newest = Math.max(0, ...done);
  if (newest > latest) throw new DatabaseNewerError(schema, newest, latest);

  const applied: number[] = [];
  for (const m of migrations) {
    if (done.has(m.id)) continue;
    const ran = await withTransaction(client, async (tx) => {
      await tx.query(LOCK_SQL, [schema]);
      // A peer may have applied it while we waited for the lock.
      const { rowCount } = await tx.query(`SELECT 1 FROM ${s}.migrations WHERE id = $1`, [m.id]);
      if (rowCount) return false;
      try {
        await tx.query(renderMigration(m.sql, schema));
      } catch (err) {
        throw new MigrationError(
          `migration ${String(m.id).padStart(4, '0')}_${m.name} failed: ${(err as Error).message}`,
          { cause: err },
        );
      }
      await tx.query(`INSERT INTO ${s}.migrations (id, name) VALUES ($1, $2)`, [m.id, m.name]);
      return true;
    });
    if (ran) applied.push(m.id);
  }
  return { applied, version: latest };
}

/** The schema's newest applied migration, or undefined when pgcoord was never installed. */
async function currentVersion(q: Queryable, schema: string): Promise<number | undefined> {
  const { rows } = await q.query<{ exists: boolean }>(
    `SELECT to_regclass(format('%I.migrations', $1::text)) IS NOT NULL AS exists`,
    [schema],
  );
  if (!rows[0]?.exists) return undefined;
  const res = await q.query<{ v: number | null }>(
    `SELECT max(id) AS v FROM ${quoteIdent(schema)}.migrations`,
  );
  return res.rows[0]?.v ?? 0;
}

/**
 * Two processes creating the same schema or table at the same instant can clash on the catalog
 * (unique_violation, duplicate_schema/table) even with IF NOT EXISTS; the loser's work is done by
 * the winner, so one retry finds it present.
 */
async function withRetryOnCatalogClash<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === '23505' || code === '42P06' || code === '42P07') return fn();
    throw err;
  }
}

const ensured = new WeakMap<object, Map<string, Promise<void>>>();

/**
 * Runs {@link migrate} once per Queryable and schema for the life of the process; blocks call
 * it before their first statement. A failure is not cached, so the next call tries again.
 */
export function ensureMigrated(q: Queryable, schema: string): Promise<void> {
  let bySchema = ensured.get(q);
  if (!bySchema) {
    bySchema = new Map();
    ensured.set(q, bySchema);
  }
  let p = bySchema.get(schema);
  if (!p) {
    p = migrate(q, { schema }).then(() => undefined);
    const map = bySchema;
    p.catch(() => map.delete(schema));
    bySchema.set(schema, p);
  }
  return p;
}
