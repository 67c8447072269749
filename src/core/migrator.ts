import { coerceError, DatabaseNewerError, MigrationError } from './errors.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent, quoteLiteral } from './identifier.js';
import { resolveLogger, type LoggerInput } from './logger.js';
import { MIGRATION_FILES } from './migrations.generated.js';
import { isConnectable, withClient, withTransaction, type Queryable } from './queryable.js';
import { backoffDelayMs, sleep } from './retry.js';

/** One numbered file of `sql/`. */
export interface Migration {
  /** Its number: `0007_x.sql` is 7. */
  id: number;
  /** Its name: `0007_attempt_list_claims.sql` is `attempt_list_claims`. */
  name: string;
  /** SQL with `{{schema}}` (quoted identifier) and `{{schema_literal}}` (string literal) placeholders. */
  sql: string;
  /**
   * Whether it breaks older code (its file begins with `--! breaking-change`): a pgcoord that
   * does not know it refuses a database where it ran. Without the marker, older code keeps
   * working on the newer database.
   */
  breaking: boolean;
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** Schema holding every pgcoord table. Default `pgcoord`. */
  schema?: string;
  /**
   * Told (warn) when the database is newer than this code but none of the newer migrations is
   * breaking, so this process goes on. Default: none.
   */
  logger?: LoggerInput;
}

/** What {@link migrate} did. */
export interface MigrateResult {
  /** Ids of the migrations this call applied (empty when the schema was already current). */
  applied: number[];
  /**
   * The schema's migration id afterwards: this code's newest, or a newer one when a newer
   * pgcoord migrated the database with migrations that are not breaking.
   */
  version: number;
}

/** The first line of a migration that older code must not run against. */
export const BREAKING_MARKER = '--! breaking-change';

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/** Reads a migration file's number, name and breaking marker. */
export function parseMigration(file: string, sql: string): Migration {
  const m = FILE_PATTERN.exec(file);
  if (!m) throw new MigrationError(`migration file ${JSON.stringify(file)} is not NNNN_name.sql`);
  return { id: Number(m[1]), name: m[2] as string, sql, breaking: sql.startsWith(BREAKING_MARKER) };
}

let cached: Migration[] | undefined;

/** The migrations shipped with this package, in order (bundled into the build from sql/). */
export function loadMigrations(): Migration[] {
  if (cached) return cached;
  const list = MIGRATION_FILES.map((f) => parseMigration(f.file, f.sql)).sort(
    (a, b) => a.id - b.id,
  );
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
 * applied exactly once. A database migrated by newer code is refused
 * ({@link DatabaseNewerError}) only when one of the migrations this code does not know is marked
 * breaking; otherwise this code goes on with it (and says so to `logger`).
 *
 * @example
 * await migrate(pool); // schema "pgcoord"
 * await migrate(pool, { schema: 'coord' });
 */
export async function migrate(q: Queryable, options: MigrateOptions = {}): Promise<MigrateResult> {
  const schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const logger = resolveLogger(options.logger);
  const migrations = loadMigrations();
  const latest = latestMigrationId();
  const newer = (version: number): MigrateResult => {
    logger.warn(
      { schema, databaseVersion: version, codeVersion: latest },
      'pgcoord: the database was migrated by a newer pgcoord; none of its newer migrations is breaking, so this one goes on',
    );
    return { applied: [], version };
  };
  try {
    if (isConnectable(q)) {
      return await withClient(q, (client) =>
        runMigrations(client, schema, migrations, latest, newer),
      );
    }
    return await runMigrations(q, schema, migrations, latest, newer);
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
  newer: (version: number) => MigrateResult,
): Promise<MigrateResult> {
  const s = quoteIdent(schema);
  const state = await readState(client, schema, latest);
  if (state !== undefined && state.version > latest) {
    if (state.breaking.length > 0) {
      throw new DatabaseNewerError(schema, state.version, latest, state.breaking);
    }
    return newer(state.version);
  }
  if (state?.version === latest && state.marked) return { applied: [], version: latest };

  const breakingIds = migrations.filter((m) => m.breaking).map((m) => m.id);
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
      // Which migrations broke older code, for the older code to read (it has not got their
      // files). A row written without saying is taken as breaking: the safe guess.
      await tx.query(
        `ALTER TABLE ${s}.migrations ADD COLUMN IF NOT EXISTS breaking boolean NOT NULL DEFAULT true`,
      );
      await tx.query(
        `UPDATE ${s}.migrations SET breaking = (id = ANY ($1::int[]))
          WHERE id <= $2::int AND breaking IS DISTINCT FROM (id = ANY ($1::int[]))`,
        [breakingIds, latest],
      );
      const { rows } = await tx.query<{ id: number; breaking: boolean }>(
        `SELECT id, breaking FROM ${s}.migrations`,
      );
      return rows;
    }),
  );
  const newest = Math.max(0, ...done.map((r) => r.id));
  if (newest > latest) {
    // A newer pgcoord migrated it while we were reading.
    const breaking = done.filter((r) => r.id > latest && r.breaking).map((r) => r.id);
    if (breaking.length > 0) throw new DatabaseNewerError(schema, newest, latest, breaking);
    return newer(newest);
  }

  const applied: number[] = [];
  const ids = new Set(done.map((r) => r.id));
  for (const m of migrations) {
    if (ids.has(m.id)) continue;
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
      await tx.query(`INSERT INTO ${s}.migrations (id, name, breaking) VALUES ($1, $2, $3)`, [
        m.id,
        m.name,
        m.breaking,
      ]);
      return true;
    });
    if (ran) applied.push(m.id);
  }
  return { applied, version: latest };
}

/**
 * The schema's newest applied migration, which of the migrations past `latest` are breaking,
 * and whether the table records the breaking marker at all; undefined when pgcoord was never
 * installed. A table without the marker (written before it existed) makes every migration past
 * `latest` count as breaking.
 */
async function readState(
  q: Queryable,
  schema: string,
  latest: number,
): Promise<{ version: number; breaking: number[]; marked: boolean } | undefined> {
  const { rows } = await q.query<{ exists: boolean; marked: boolean }>(
    `SELECT to_regclass(format('%I.migrations', $1::text)) IS NOT NULL AS exists,
            EXISTS (SELECT 1 FROM pg_attribute
                     WHERE attrelid = to_regclass(format('%I.migrations', $1::text))
                       AND attname = 'breaking' AND NOT attisdropped) AS marked`,
    [schema],
  );
  if (!rows[0]?.exists) return undefined;
  const marked = rows[0].marked;
  const res = await q.query<{ v: number | null; breaking: number[] }>(
    `SELECT max(id) AS v,
            coalesce(array_agg(id ORDER BY id) FILTER (WHERE id > $1::int AND ${marked ? 'breaking' : 'true'}), '{}') AS breaking
       FROM ${quoteIdent(schema)}.migrations`,
    [latest],
  );
  return { version: res.rows[0]?.v ?? 0, breaking: res.rows[0]?.breaking ?? [], marked };
}

/**
 * Two processes creating the same schema or table at the same instant can clash on the catalog
 * (unique_violation, duplicate_schema/table) even with IF NOT EXISTS; the loser's work is done by
 * the winner, so a retry after a short, jittered backoff finds it present. These clashes are not
 * retryable in general (the table of retryable failures does not list them): only here.
 */
async function withRetryOnCatalogClash<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const clash = code === '23505' || code === '42P06' || code === '42P07' || code === '42701';
      if (!clash || attempt >= CATALOG_CLASH_ATTEMPTS) throw err;
      await sleep(backoffDelayMs(attempt, { baseMs: 20, maxMs: 200, jitter: 'full' }));
    }
  }
}

const CATALOG_CLASH_ATTEMPTS = 3;

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
