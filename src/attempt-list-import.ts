import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { ATTEMPT_LIST_LIMITS, checkItem } from './attempt-list-limits.js';
import { coerceError, ValidationError } from './db/errors.js';
import { quoteIdent } from './db/identifier.js';
import { withTransaction, type Queryable } from './db/queryable.js';
import { checkInt, describe } from './validate.js';

/** Options of {@link AttemptList.import}. */
export interface ImportOptions {
  /** Called after each chunk is written (inside the import's transaction: nothing is committed yet). */
  onProgress?: (progress: ImportResult) => void;
  /** Items per COPY chunk, 1,000 to 1,000,000. Default 50,000. */
  chunkSize?: number;
  /** A client inside the caller's transaction (a `pg.PoolClient`/`pg.Client`: COPY needs one connection). */
  tx?: Queryable;
}

/** Counts of an import (and of each progress report). */
export interface ImportResult {
  /** Items read from the source so far. */
  read: number;
  /** Items that were new to the list (the rest were duplicates, skipped). */
  inserted: number;
}

/**
 * Streams items into a list. Fast path: each chunk is COPYed straight into the table inside a
 * savepoint, as fast as a bare COPY. The first chunk that hits an existing item is rolled back to
 * its savepoint and re-sent as `INSERT ... ON CONFLICT DO NOTHING`; from then on every chunk
 * takes that path (a source with one duplicate tends to have more, and a failed COPY wastes the
 * work done before the clash). Everything runs in one transaction, so the import is atomic.
 */
export async function importItems(
  q: Queryable,
  schema: string,
  list: string,
  source: AsyncIterable<string> | Iterable<string> | Readable,
  options: ImportOptions,
): Promise<ImportResult> {
  const chunkSize =
    options.chunkSize === undefined
      ? 50_000
      : checkInt('options.chunkSize', options.chunkSize, { min: 1000, max: 1_000_000 });
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new ValidationError(
      'options.onProgress',
      `must be a function, got ${describe(options.onProgress)}`,
    );
  }
  const items = toItems(source);
  const t = `${quoteIdent(schema)}.list_items`;
  const copySql = `COPY ${t} (list, item) FROM STDIN`;
  const insertSql = `INSERT INTO ${t} (list, item) SELECT $1::text, unnest($2::text[]) ON CONFLICT DO NOTHING`;
  const listField = escapeCopy(list);
  try {
    return await withTransaction(q, async (tx) => {
      const client = tx as pg.ClientBase;
      const result: ImportResult = { read: 0, inserted: 0 };
      let useCopy = true;
      let chunk: string[] = [];
      const flush = async () => {
        if (chunk.length === 0) return;
        let inserted: number | undefined;
        if (useCopy) {
          await client.query('SAVEPOINT pgcoord_import');
          try {
            inserted = await copyChunk(client, copySql, listField, chunk);
            await client.query('RELEASE SAVEPOINT pgcoord_import');
          } catch (err) {
            await client.query('ROLLBACK TO SAVEPOINT pgcoord_import');
            if ((err as { code?: unknown }).code !== '23505') throw err;
            useCopy = false;
          }
        }
        if (inserted === undefined) {
          inserted = (await client.query(insertSql, [list, chunk])).rowCount ?? 0;
        }
        result.read += chunk.length;
        result.inserted += inserted;
        chunk = [];
        options.onProgress?.({ ...result });
      };
      let index = 0;
      for await (const value of items) {
        chunk.push(checkItem(value, `source item ${index++}`));
        if (chunk.length >= chunkSize) await flush();
      }
      await flush();
      return result;
    });
  } catch (err) {
    throw coerceError(err);
  }
}

async function copyChunk(
  client: pg.ClientBase,
  sql: string,
  listField: string,
  chunk: string[],
): Promise<number> {
  const stream = client.query(copyFrom(sql));
  // Build the COPY text in slabs of ~1 MB: few writes, bounded memory.
  async function* lines() {
    let buf = '';
    for (const item of chunk) {
      buf += `${listField}\t${escapeCopy(item)}\n`;
      if (buf.length >= 1 << 20) {
        yield buf;
        buf = '';
      }
    }
    if (buf.length > 0) yield buf;
  }
  await pipeline(Readable.from(lines()), stream);
  return stream.rowCount;
}

/** COPY text format: backslash, newline, carriage return and tab must be escaped (NUL is refused earlier). */
function escapeCopy(value: string): string {
  if (!/[\\\n\r\t]/.test(value)) return value;
  return value.replace(/[\\\n\r\t]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t',
  );
}

/** Normalizes the accepted sources into an async iterable of raw (unchecked) values. */
function toItems(source: unknown): AsyncIterable<unknown> | Iterable<unknown> {
  if (source instanceof Readable) return fromReadable(source);
  if (typeof source === 'string' || source === null || typeof source !== 'object') {
    throw new ValidationError(
      'source',
      `must be an iterable or async iterable of strings, or a Readable, got ${describe(source)}`,
    );
  }
  const s = source as Partial<AsyncIterable<unknown> & Iterable<unknown>>;
  if (typeof s[Symbol.asyncIterator] !== 'function' && typeof s[Symbol.iterator] !== 'function') {
    throw new ValidationError(
      'source',
      'must be an iterable or async iterable of strings, or a Readable',
    );
  }
  return source as AsyncIterable<unknown> | Iterable<unknown>;
}

/**
 * A Readable's items: in object mode each string chunk is one item; bytes (a byte stream, or
 * Buffers in object mode) are newline-separated UTF-8 lines (LF or CRLF), blank ones skipped.
 */
async function* fromReadable(stream: Readable): AsyncIterable<unknown> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of stream) {
    if (stream.readableObjectMode && !(chunk instanceof Uint8Array)) {
      yield chunk;
      continue;
    }
    rest += typeof chunk === 'string' ? chunk : decoder.write(chunk as Buffer);
    let nl: number;
    let start = 0;
    while ((nl = rest.indexOf('\n', start)) !== -1) {
      const line = stripCr(rest.slice(start, nl));
      start = nl + 1;
      if (line.length > 0) yield line;
    }
    rest = rest.slice(start);
    if (rest.length > ATTEMPT_LIST_LIMITS.maxItemBytes * 4) {
      // A "line" longer than any valid item: refuse now rather than buffer a huge file.
      checkItem(rest, 'source line');
    }
  }
  rest += decoder.end();
  const last = stripCr(rest);
  if (last.length > 0) yield last;
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
