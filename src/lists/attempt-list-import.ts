import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isUtf8 } from 'node:buffer';
import { StringDecoder } from 'node:string_decoder';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { ATTEMPT_LIST_LIMITS, checkItem } from './attempt-list-limits.js';
import { ValidationError } from '../core/index.js';
import { dollarQuote, quoteIdent } from '../core/index.js';
import { withTransaction, type Queryable } from '../core/index.js';
import { notifyChannel } from './attempt-list-sql.js';
import { checkInt, checkText, describe } from '../core/index.js';
import {
  isPlain,
  NO_SCHEDULE,
  type Schedule,
  type ScheduleOptions,
} from './attempt-list-schedule.js';
import { checkKey, MAX_KEY_REGEX_BYTES } from './attempt-list-settings.js';

/**
 * Options of {@link AttemptList.import}. The schedule (runAt / delayMs / priority) applies to every
 * new item; a `delayMs` counts from the start of the import, on the server clock.
 */
export interface ImportOptions extends ScheduleOptions {
  /** Called after each chunk is written (inside the import's transaction: nothing is committed yet). */
  onProgress?: (progress: ImportResult) => void;
  /** Items per COPY chunk, 1,000 to 1,000,000. Default 50,000. */
  chunkSize?: number;
  /** A client inside the caller's transaction (a `pg.PoolClient`/`pg.Client`: COPY needs one connection). */
  tx?: Queryable;
  /**
   * Each source string is `key<separator>item`, split at the first separator (say `'\t'`): the
   * item's key (see {@link AttemptList.setLimits}). A string without the separator is an item
   * without a key.
   */
  keySeparator?: string;
  /**
   * A key rule for this import: a PostgreSQL regular expression whose first capture group is the
   * key of each item given without one. Default: the list's stored rule.
   */
  keyRegex?: string;
}

/** Counts of an import (and of each progress report). */
export interface ImportResult {
  /** Items read from the source so far. */
  read: number;
  /** Items that were new to the list (the rest were duplicates, skipped). */
  inserted: number;
}

/**
 * A load this big refreshes the table's statistics before it commits. Until autovacuum's ANALYZE
 * comes round (up to a minute), the planner would otherwise take a just-loaded million-item list
 * for a few rows and page or complete through bitmap scans of the whole list (measured: 10-20 ms
 * instead of well under 1 ms). It counts this transaction's own rows. See {@link refreshStatistics}.
 */
export const ANALYZE_AFTER_ROWS = 50_000;

/**
 * ANALYZE of list_items with a small sample. What the planner lacks after a big load is the size
 * of the table and of its lists, which a sample of 3,000 rows (statistics target 10) gives as
 * well as the default 30,000, at a tenth of the cost (measured on 1M rows: ~15 ms instead of
 * ~150-200 ms, 8% of the import). The fuller statistics follow with autovacuum's own ANALYZE.
 * The setting is changed for this transaction only and put back, all in one round trip.
 */
export async function refreshStatistics(q: Queryable, table: string): Promise<void> {
  const body = `
    DECLARE v text := current_setting('default_statistics_target');
    BEGIN
      PERFORM set_config('default_statistics_target', '10', true);
      ANALYZE ${table};
      PERFORM set_config('default_statistics_target', v, true);
    END `;
  await q.query(`DO ${dollarQuote(body)}`);
}

/**
 * Streams items into a list. Fast path: each chunk is COPYed straight into the table inside a
 * savepoint, as fast as a bare COPY. The first chunk that hits an existing item is rolled back to
 * its savepoint and re-sent as `INSERT ... ON CONFLICT DO NOTHING`; from then on every chunk
 * takes that path (a source with one duplicate tends to have more, and a failed COPY wastes the
 * work done before the clash). Everything runs in one transaction, so the import is atomic.
 * Failures come out as thrown: AttemptList.import runs this through its StatementRunner, which
 * classifies them.
 */
export async function importItems(
  q: Queryable,
  schema: string,
  list: string,
  source: AsyncIterable<string> | Iterable<string> | Readable,
  options: ImportOptions,
  /** The checked schedule of the new items (AttemptList.import checks it before any SQL). */
  schedule: Schedule = NO_SCHEDULE,
  /**
   * The insert statement of keyed items: buildSql's insertScheduled.insertQuiet (list, items,
   * keys, key rule, runAt, delayMs, priority).
   */
  keyedInsertSql?: string,
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
  const separator =
    options.keySeparator === undefined
      ? undefined
      : checkText('options.keySeparator', options.keySeparator, { maxBytes: 16 });
  const keyRegex =
    options.keyRegex === undefined
      ? null
      : checkText('options.keyRegex', options.keyRegex, { maxBytes: MAX_KEY_REGEX_BYTES });
  const items = toItems(source);
  const t = `${quoteIdent(schema)}.list_items`;
  const plain = isPlain(schedule);
  // A scheduled import writes run_at and priority too, the same for every item: COPY takes them
  // as two more fields of each line (a literal due time), the INSERT path as two parameters.
  const copySql = plain
    ? `COPY ${t} (list, item) FROM STDIN`
    : `COPY ${t} (list, item, run_at, priority) FROM STDIN`;
  const insertSql = plain
    ? `INSERT INTO ${t} (list, item) SELECT $1::text, unnest($2::text[]) ON CONFLICT DO NOTHING`
    : `INSERT INTO ${t} (list, item, run_at, priority)
       SELECT $1::text, unnest($2::text[]), $3::timestamptz, $4::int2 ON CONFLICT DO NOTHING`;
  const listField = escapeCopy(list);
  return withTransaction(q, async (tx) => {
    const client = tx as pg.ClientBase;
    const due = plain ? undefined : await dueTime(client, schedule);
    const insertValues = (chunk: string[]) =>
      plain ? [list, chunk] : [list, chunk, due, schedule.priority];
    const rest = plain ? '' : `\t${due}\t${schedule.priority}`;
    // A list with a key rule or limits, or keys in the input: every item needs its key, which
    // COPY cannot derive. Read in this transaction, so a concurrent setLimits waits for it.
    const { rows } = await client.query(
      `SELECT 1 FROM ${quoteIdent(schema)}.list_settings WHERE list = $1::text`,
      [list],
    );
    if (rows.length > 0 || separator !== undefined || keyRegex !== null) {
      if (keyedInsertSql === undefined) throw new Error('importItems: keyed insert SQL missing');
      const result = await importKeyed(client, list, items, chunkSize, separator, keyRegex, {
        sql: keyedInsertSql,
        // One due time for every item, as COPY writes it (a literal; '-infinity' is ready).
        schedule: [due ?? '-infinity', 0, schedule.priority],
        onProgress: options.onProgress,
      });
      if (result.inserted >= ANALYZE_AFTER_ROWS) await refreshStatistics(client, t);
      if (result.inserted > 0) {
        await client.query(`SELECT pg_notify(${notifyChannel(schema)}, '')`, [list]);
      }
      return result;
    }
    const result: ImportResult = { read: 0, inserted: 0 };
    const source = iterate(items);
    let useCopy = true;
    for (;;) {
      const first = await pull(source);
      if (first === undefined) break;
      const chunk = [first.item];
      let inserted: number | undefined;
      if (useCopy) {
        await client.query('SAVEPOINT pgcoord_import');
        try {
          inserted = await copyChunk(
            client,
            copySql,
            listField,
            rest,
            first.field,
            chunk,
            chunkSize,
            source,
          );
          await client.query('RELEASE SAVEPOINT pgcoord_import');
        } catch (err) {
          await client.query('ROLLBACK TO SAVEPOINT pgcoord_import');
          if ((err as { code?: unknown }).code !== '23505') throw err;
          useCopy = false;
        }
      }
      if (inserted === undefined) {
        // INSERT path: read the rest of the chunk (a failed COPY stopped reading mid-chunk).
        while (chunk.length < chunkSize) {
          const next = await pull(source);
          if (next === undefined) break;
          chunk.push(next.item);
        }
        inserted = (await client.query(insertSql, insertValues(chunk))).rowCount ?? 0;
      }
      result.read += chunk.length;
      result.inserted += inserted;
      options.onProgress?.({ ...result });
    }
    if (result.inserted >= ANALYZE_AFTER_ROWS) await refreshStatistics(client, t);
    // One notification per import, fired at commit: wakes idle workers of the list.
    if (result.inserted > 0) {
      await client.query(`SELECT pg_notify(${notifyChannel(schema)}, '')`, [list]);
    }
    return result;
  });
}

/**
 * The run_at of a scheduled import's items, as a text both COPY and a timestamptz parameter read
 * whatever the session's DateStyle: runAt's ISO text, or the server clock plus delayMs (the
 * import's start: one due time for every item) written by to_json in ISO 8601, or '-infinity'.
 */
async function dueTime(client: pg.ClientBase, schedule: Schedule): Promise<string> {
  if (schedule.runAt !== null) return schedule.runAt;
  if (schedule.delayMs === 0) return '-infinity';
  const { rows } = await client.query<{ due: string }>(
    `SELECT to_json(statement_timestamp() + $1::float8 * interval '1 millisecond') #>> '{}' AS due`,
    [schedule.delayMs],
  );
  return rows[0]!.due;
}

/**
 * The import of keyed items: chunks through the keyed INSERT (the server derives keys by the
 * rule and creates the key rows). Slower than COPY (measured in docs/attempt-lists.md) but the
 * only way the server applies a key rule to each row.
 */
async function importKeyed(
  client: pg.ClientBase,
  list: string,
  source: AsyncIterable<unknown> | Iterable<unknown>,
  chunkSize: number,
  separator: string | undefined,
  keyRegex: string | null,
  how: {
    sql: string;
    /** runAt, delayMs and priority of every item: the statement's $5 to $7. */
    schedule: [string, number, number];
    onProgress: ImportOptions['onProgress'];
  },
): Promise<ImportResult> {
  const result: ImportResult = { read: 0, inserted: 0 };
  const size = Math.min(chunkSize, 20_000);
  let items: string[] = [];
  let keys: Array<string | null> = [];
  const flush = async () => {
    if (items.length === 0) return;
    const r = await client.query<{ n: number }>(how.sql, [
      list,
      items,
      separator === undefined ? null : keys,
      keyRegex,
      ...how.schedule,
    ]);
    result.read += items.length;
    result.inserted += r.rows[0]?.n ?? 0;
    items = [];
    keys = [];
    how.onProgress?.({ ...result });
  };
  let index = 0;
  const take = (value: unknown) => {
    const at = index++;
    if (separator !== undefined && typeof value === 'string') {
      const cut = value.indexOf(separator);
      if (cut >= 0) {
        keys.push(checkKey(value.slice(0, cut), `source line ${at} (key)`));
        items.push(checkItem(value.slice(cut + separator.length), `source item ${at}`));
        return;
      }
    }
    items.push(checkItem(value, `source item ${at}`));
    keys.push(null);
  };
  if (Symbol.asyncIterator in source) {
    for await (const value of source as AsyncIterable<unknown>) {
      take(value);
      if (items.length >= size) await flush();
    }
  } else {
    for (const value of source as Iterable<unknown>) {
      take(value);
      if (items.length >= size) await flush();
    }
  }
  await flush();
  return result;
}

interface SourceItem {
  item: string;
  /** Its COPY text field. */
  field: string;
}

type Pulled = SourceItem | undefined;

/**
 * Pulls validated items from the source one at a time: synchronously from a sync iterable (no
 * promise per item: a million microtasks are a measurable share of an import), as a promise from
 * an async one.
 */
function iterate(items: AsyncIterable<unknown> | Iterable<unknown>) {
  let index = 0;
  const toItem = (r: IteratorResult<unknown>): Pulled =>
    r.done ? undefined : { item: r.value as string, field: copyField(r.value, index++) };
  if (Symbol.asyncIterator in items) {
    const it = (items as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    return { next: (): Pulled | Promise<Pulled> => it.next().then(toItem) };
  }
  const it = (items as Iterable<unknown>)[Symbol.iterator]();
  return { next: (): Pulled | Promise<Pulled> => toItem(it.next()) };
}

/** The next item, awaiting only when the source is asynchronous. */
async function pull(source: ReturnType<typeof iterate>): Promise<Pulled> {
  return source.next();
}

/**
 * One chunk through COPY, streamed while it is read from the source, so reading and validating
 * in Node overlaps with the server's inserting (collecting the chunk first left one of them idle
 * at a time: half the speed). Items read are appended to `chunk`, which the INSERT path re-sends
 * if the COPY meets an existing item.
 */
async function copyChunk(
  client: pg.ClientBase,
  sql: string,
  listField: string,
  /** The fields after the item on each line (a scheduled import's run_at and priority). */
  rest: string,
  firstField: string,
  chunk: string[],
  chunkSize: number,
  source: ReturnType<typeof iterate>,
): Promise<number> {
  const stream = client.query(copyFrom(sql));
  async function* text() {
    let buf = `${listField}\t${firstField}${rest}\n`;
    while (chunk.length < chunkSize) {
      let next = source.next();
      if (next instanceof Promise) next = await next;
      if (next === undefined) break;
      chunk.push(next.item);
      buf += `${listField}\t${next.field}${rest}\n`;
      // Slabs of 64 KB: small enough to keep the server fed, big enough to keep writes few.
      if (buf.length >= 1 << 16) {
        yield buf;
        buf = '';
      }
    }
    if (buf.length > 0) yield buf;
  }
  const gen = text();
  try {
    await pipeline(Readable.from(gen), stream);
  } catch (err) {
    // Every item the generator read must be in `chunk` before the INSERT path reads on from the
    // same source. pipeline() already waits for the readable to close; this states it here
    // rather than rely on it.
    await gen.return(undefined).catch(() => undefined);
    throw err;
  }
  return stream.rowCount;
}

/**
 * Validates one source value and returns its COPY text field. Fast path for the common case, one
 * pass over the string: printable ASCII without a backslash is valid, needs no escaping, and its
 * byte length is its length. Anything else takes the full check and the escaper.
 */
function copyField(value: unknown, index: number): string {
  if (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= ATTEMPT_LIST_LIMITS.maxItemBytes
  ) {
    let plain = true;
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 0x5c) {
        plain = false;
        break;
      }
    }
    if (plain) return value;
  }
  return escapeCopy(checkItem(value, `source item ${index}`));
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
 * Bytes that are not UTF-8 are refused (a ValidationError naming the line), never replaced with
 * U+FFFD: that would import items nobody wrote, and the import is atomic, so nothing is written.
 */
async function* fromReadable(stream: Readable): AsyncIterable<unknown> {
  const decoder = new StrictUtf8();
  let rest = '';
  let lines = 0;
  for await (const chunk of stream) {
    if (stream.readableObjectMode && !(chunk instanceof Uint8Array)) {
      yield chunk;
      continue;
    }
    rest += typeof chunk === 'string' ? chunk : decoder.write(chunk as Uint8Array, lines);
    let nl: number;
    let start = 0;
    while ((nl = rest.indexOf('\n', start)) !== -1) {
      const line = stripCr(rest.slice(start, nl));
      start = nl + 1;
      lines++;
      if (line.length > 0) yield line;
    }
    rest = rest.slice(start);
    if (rest.length > ATTEMPT_LIST_LIMITS.maxItemBytes * 4) {
      // A "line" longer than any valid item: refuse now rather than buffer a huge file.
      checkItem(rest, 'source line');
    }
  }
  rest += decoder.end(lines);
  const last = stripCr(rest);
  if (last.length > 0) yield last;
}

const NO_BYTES = new Uint8Array(0);

/**
 * A streaming UTF-8 decoder that throws on bytes that are not UTF-8 (StringDecoder would turn
 * them into U+FFFD). Each chunk's complete sequences are checked with isUtf8 (simdutf) and
 * decoded by StringDecoder: together ~5x faster than a fatal TextDecoder in stream mode, which
 * cost ~3% of a million-item import. `lines` is the number of lines before the chunk, for the
 * message.
 */
class StrictUtf8 {
  private readonly decoder = new StringDecoder('utf8');
  /** An incomplete sequence at the end of the bytes so far, checked with the next chunk. */
  private tail: Uint8Array = NO_BYTES;

  write(chunk: Uint8Array, lines: number): string {
    const bytes = this.tail.length > 0 ? Buffer.concat([this.tail, chunk]) : chunk;
    const cut = incompleteTail(bytes);
    const whole = bytes.subarray(0, bytes.length - cut);
    if (!isUtf8(whole)) throw notUtf8(lines + firstBadLine(whole));
    this.tail = cut === 0 ? NO_BYTES : Uint8Array.from(bytes.subarray(bytes.length - cut));
    return this.decoder.write(chunk as Buffer);
  }

  end(lines: number): string {
    if (this.tail.length > 0) throw notUtf8(lines + 1);
    return this.decoder.end();
  }
}

function notUtf8(line: number): ValidationError {
  return new ValidationError('source', `line ${line} is not valid UTF-8`);
}

/**
 * How many bytes at the end of `bytes` start a multi-byte sequence they do not finish (0 to 3).
 * Only the lead byte is read: whether the sequence is valid is isUtf8's business.
 */
function incompleteTail(bytes: Uint8Array): number {
  for (let i = 1; i <= 3 && i <= bytes.length; i++) {
    const b = bytes[bytes.length - i]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    // ASCII, or a byte no sequence starts with (C0, C1, F5-FF): isUtf8 judges it now.
    if (b < 0xc2 || b > 0xf4) return 0;
    const length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
    return length > i ? i : 0;
  }
  return 0;
}

/**
 * For the message: the line of `bytes` (1 = the first) that is not UTF-8. Lines split at 0x0A,
 * which is never part of a multi-byte sequence, so each line is valid or not on its own.
 */
function firstBadLine(bytes: Uint8Array): number {
  let start = 0;
  let line = 1;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      if (!isUtf8(bytes.subarray(start, i))) return line;
      start = i + 1;
      line++;
    }
  }
  return 1;
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
