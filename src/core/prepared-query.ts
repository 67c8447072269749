import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Queryable } from './queryable.js';

/**
 * Pools whose server connections change hands between transactions (a transaction pooler such
 * as PgBouncer before 1.21): named statements are off for good on them.
 */
const pooled = new WeakSet<pg.Pool>();

/**
 * SQLSTATEs a transaction pooler causes with named statements: node-postgres remembers which
 * names it prepared per client connection, the server per server connection, and behind such a
 * pooler the two stop matching. Both are raised at Parse or Bind, before anything executes.
 */
const CLASH = new Set(['42P05' /* already exists */, '26000' /* does not exist */]);

/**
 * Runs `text` with `values`. With `prepare` on and `q` a node-postgres pool, as a named prepared
 * statement, so each server connection parses and plans it once (the rate limiter's set-based
 * statement costs more to plan than to run: unnamed, its decisions ran up to 1.7 times slower). When
 * the server answers that a statement already exists or does not exist, which is what a
 * transaction pooler does to named statements, the statement is sent again unnamed (it had not
 * run) and the pool gets unnamed statements from then on. On a single client (a caller's
 * transaction) statements are always unnamed: there such an error would abort the transaction.
 * The name is derived from the text, so equal texts share one statement per connection.
 */
export async function preparedQuery<R extends pg.QueryResultRow>(
  q: Queryable,
  text: string,
  values: unknown[],
  prepare: boolean,
): Promise<pg.QueryResult<R>> {
  if (!prepare || !(q instanceof pg.Pool) || pooled.has(q)) return q.query<R>(text, values);
  try {
    return await q.query<R>({ name: statementName(text), text, values });
  } catch (err) {
    if (!CLASH.has((err as { code?: string }).code ?? '')) throw err;
    pooled.add(q);
    return q.query<R>(text, values);
  }
}

const names = new Map<string, string>();

function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `pgcoord_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
    names.set(text, name);
  }
  return name;
}
