import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Queryable } from './queryable.js';

/**
 * Runs `text` as a named prepared statement when `q` is a node-postgres pool or client, so the
 * server parses and plans it once per connection (the set-based rate-limit statement costs more
 * to plan than to run); any other Queryable gets a plain parameterized query. The name is derived
 * from the text, so equal texts share one statement per connection.
 */
export function preparedQuery<R extends pg.QueryResultRow>(
  q: Queryable,
  text: string,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  if (q instanceof pg.Pool || q instanceof pg.Client) {
    return q.query<R>({ name: statementName(text), text, values });
  }
  return q.query<R>(text, values);
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
