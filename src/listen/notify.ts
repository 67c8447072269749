import { randomUUID } from 'node:crypto';
import { Coalescer } from '../core/index.js';
import { coerceError, ValidationError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent } from '../core/index.js';
import { ensureMigrated } from '../core/index.js';
import { isConnectable, type Queryable } from '../core/index.js';
import { checkBoolean, checkTx, optionsTx } from '../core/index.js';
import { byteLength, checkOptions, checkText, optionalInt, toJsonText } from '../core/index.js';

/** Longest channel name PostgreSQL accepts, in bytes (NAMEDATALEN - 1). */
export const MAX_CHANNEL_BYTES = 63;

/** Largest NOTIFY payload PostgreSQL accepts, in bytes (it must be shorter than 8000). */
export const MAX_PAYLOAD_BYTES = 7999;

/**
 * A notification that carries the id of a payload stored in `listener_payloads` starts with
 * this. The control character cannot appear at the start of JSON text, so ordinary payloads do
 * not collide with it.
 */
export const LARGE_PAYLOAD_PREFIX = '\u0001pgcoord.payload:';

/** A JSON value: what `notify` serializes when the payload is not a string. */
export type JsonValue =
  null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Options of {@link Notifier} (and of {@link notify}). */
export interface NotifierOptions {
  /**
   * Store payloads over 7999 bytes in `listener_payloads` and notify their id instead; a
   * {@link Listener} fetches them transparently. Default false: such a payload is refused with a
   * ValidationError.
   */
  largePayloads?: boolean;
  /** Schema of the `listener_payloads` table. Default `pgcoord`. */
  schema?: string;
  /**
   * Stored payloads older than this (server clock), in ms, are deleted by later large-payload
   * notifications (100 per statement) or by {@link purgeListenerPayloads}. Default 3,600,000 (1 h).
   */
  largePayloadRetentionMs?: number;
  /** Most notifications sent in one statement. Default 500. */
  maxBatch?: number;
  /**
   * Statements allowed in flight at once. Default 1: commits that NOTIFY are serialized by the
   * server anyway, so one statement at a time lets every caller that arrives meanwhile join the
   * next batch (measured: 8 one-at-a-time senders get 3.1x the bare rate with 1, 2.8x with 2).
   */
  maxInFlight?: number;
}

/** Options of one {@link notify} call. */
export interface NotifyOptions extends NotifierOptions {
  /**
   * Send inside the caller's transaction (delivered when it commits, dropped if it rolls back).
   * Not coalesced with other callers.
   */
  tx?: Queryable;
}

interface Item {
  channel: string;
  /** What pg_notify sends (a large payload's marker). */
  sent: string;
  /** Stored large payload, if any. */
  stored?: { id: string; payload: string };
}

interface Resolved {
  largePayloads: boolean;
  schema: string;
  retentionMs: number;
  maxBatch: number;
  maxInFlight: number;
}

/** Default of {@link NotifierOptions.largePayloadRetentionMs}: 1 hour. */
export const DEFAULT_LARGE_PAYLOAD_RETENTION_MS = 3_600_000;
/** Default of {@link NotifierOptions.maxBatch}. */
export const DEFAULT_NOTIFY_MAX_BATCH = 500;
/** Default of {@link NotifierOptions.maxInFlight}. */
export const DEFAULT_NOTIFY_MAX_IN_FLIGHT = 1;

/**
 * Defaults and validation of {@link NotifierOptions}: frozen. `notify()` runs it per call, so
 * `Object.freeze` (no nested arrays here) rather than core `frozen()`, which walks the values.
 */
function resolveNotifierOptions(options: NotifierOptions | undefined): Readonly<Resolved> {
  const o = checkOptions('options', options);
  return Object.freeze({
    largePayloads: checkBoolean('options.largePayloads', o.largePayloads, false),
    schema: checkSchemaName(o.schema ?? DEFAULT_SCHEMA),
    retentionMs: optionalInt(
      'options.largePayloadRetentionMs',
      o.largePayloadRetentionMs,
      { min: 1_000, max: 365 * 86_400_000 },
      DEFAULT_LARGE_PAYLOAD_RETENTION_MS,
    ),
    maxBatch: optionalInt(
      'options.maxBatch',
      o.maxBatch,
      { min: 1, max: 10_000 },
      DEFAULT_NOTIFY_MAX_BATCH,
    ),
    maxInFlight: optionalInt(
      'options.maxInFlight',
      o.maxInFlight,
      { min: 1, max: 100 },
      DEFAULT_NOTIFY_MAX_IN_FLIGHT,
    ),
  });
}

/** Validates and encodes one notification; refuses before any SQL runs. */
function prepare(channel: unknown, payload: unknown, cfg: Resolved): Item {
  checkText('channel', channel, { maxBytes: MAX_CHANNEL_BYTES });
  let text: string;
  if (typeof payload === 'string') {
    text = payload;
  } else {
    text = toJsonText('payload', payload);
  }
  checkText('payload', text, { maxBytes: Number.MAX_SAFE_INTEGER, allowEmpty: true });
  const bytes = byteLength(text);
  if (bytes <= MAX_PAYLOAD_BYTES) return { channel: channel as string, sent: text };
  if (!cfg.largePayloads) {
    throw new ValidationError(
      'payload',
      `is ${bytes} bytes; NOTIFY allows at most ${MAX_PAYLOAD_BYTES} bytes (pass { largePayloads: true } to store larger payloads in a table)`,
    );
  }
  const id = randomUUID();
  return {
    channel: channel as string,
    sent: LARGE_PAYLOAD_PREFIX + id,
    stored: { id, payload: text },
  };
}

const SEND_SQL = `SELECT count(pg_notify(c, p))::int AS sent FROM unnest($1::text[], $2::text[]) AS t(c, p)`;

function storeSql(schema: string): string {
  const table = `${quoteIdent(schema)}.listener_payloads`;
  // One statement, one commit: store the payloads, drop expired ones (server clock), notify.
  return `WITH stored AS (
      INSERT INTO ${table} (id, channel, payload)
      SELECT * FROM unnest($3::uuid[], $4::text[], $5::text[])
      RETURNING 1
    ), purged AS (
      DELETE FROM ${table} WHERE id IN (
        SELECT id FROM ${table}
        WHERE created_at < now() - $6::bigint * interval '1 millisecond'
        ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED)
      RETURNING 1
    )
    SELECT count(pg_notify(c, p))::int AS sent,
           (SELECT count(*) FROM stored)::int AS stored,
           (SELECT count(*) FROM purged)::int AS purged
    FROM unnest($1::text[], $2::text[]) AS t(c, p)`;
}

/** Sends a batch in one statement (so one commit and one turn of NOTIFY's commit lock). */
async function sendBatch(q: Queryable, items: Item[], cfg: Resolved): Promise<void> {
  const channels = items.map((i) => i.channel);
  const sent = items.map((i) => i.sent);
  const large = items.filter((i) => i.stored !== undefined);
  try {
    if (large.length === 0) {
      await q.query(SEND_SQL, [channels, sent]);
      return;
    }
    await ensureMigrated(q, cfg.schema);
    await q.query(storeSql(cfg.schema), [
      channels,
      sent,
      large.map((i) => i.stored!.id),
      large.map((i) => i.channel),
      large.map((i) => i.stored!.payload),
      cfg.retentionMs,
    ]);
  } catch (err) {
    throw coerceError(err);
  }
}

/**
 * Sends notifications, coalescing concurrent calls into one statement: N callers waiting at the
 * same moment cost one round trip and one commit. That matters because a transaction that
 * NOTIFYs takes a database-wide lock at commit, so NOTIFYing commits are serialized: fewer,
 * larger commits deliver more. Within one batch PostgreSQL delivers identical (channel, payload)
 * pairs once, as it does inside any transaction; make payloads distinct when each must arrive.
 *
 * @example
 * const notifier = new Notifier(pool);
 * await notifier.notify('jobs', { id: 42 });
 */
export class Notifier {
  private readonly q: Queryable;
  private readonly cfg: Resolved;
  private readonly coalescer: Coalescer<Item, void>;

  /** @param q a pool (or ClusterPool) for coalesced sends; a single client works too. */
  constructor(q: Queryable, options: NotifierOptions = {}) {
    if (!q || typeof (q as Partial<Queryable>).query !== 'function') {
      throw new ValidationError('queryable', 'must have a query() method (a pg.Pool or client)');
    }
    this.q = q;
    this.cfg = resolveNotifierOptions(options);
    this.coalescer = new Coalescer<Item, void>(
      async (items) => {
        await sendBatch(this.q, items, this.cfg);
        return items.map(() => undefined);
      },
      { maxBatch: this.cfg.maxBatch, maxInFlight: this.cfg.maxInFlight },
    );
  }

  /**
   * Sends `payload` (a string, or any JSON value, serialized) on `channel`. Resolves once
   * committed (sent). With `tx`, runs inside the caller's transaction instead.
   */
  async notify(
    channel: string,
    payload: string | JsonValue = '',
    options: { tx?: Queryable } = {},
  ): Promise<void> {
    const item = prepare(channel, payload, this.cfg);
    const tx = optionsTx(options);
    if (tx !== undefined) return sendBatch(tx, [item], this.cfg);
    return this.coalescer.submit(item);
  }
}

const shared = new WeakMap<Queryable, Map<string, Notifier>>();

/**
 * Sends one notification. On a pool, concurrent calls with the same options share one
 * {@link Notifier} and are coalesced into one statement; on a client (for example inside your
 * transaction) or with `tx`, it runs there and is delivered when that transaction commits.
 * Payloads over 7999 bytes are refused with a ValidationError unless `largePayloads` is on.
 *
 * @example
 * await notify(pool, 'jobs', { id: 42 });
 */
export async function notify(
  queryable: Queryable,
  channel: string,
  payload: string | JsonValue = '',
  options: NotifyOptions = {},
): Promise<void> {
  if (!queryable || typeof (queryable as Partial<Queryable>).query !== 'function') {
    throw new ValidationError('queryable', 'must have a query() method (a pg.Pool or client)');
  }
  const { tx: rawTx, ...rest } = checkOptions('options', options);
  const tx = checkTx(rawTx);
  const cfg = resolveNotifierOptions(rest);
  if (tx !== undefined || !isConnectable(queryable)) {
    return sendBatch(tx ?? queryable, [prepare(channel, payload, cfg)], cfg);
  }
  let byKey = shared.get(queryable);
  if (!byKey) {
    byKey = new Map();
    shared.set(queryable, byKey);
  }
  const key = JSON.stringify(cfg);
  let notifier = byKey.get(key);
  if (!notifier) {
    notifier = new Notifier(queryable, rest);
    byKey.set(key, notifier);
  }
  return notifier.notify(channel, payload);
}

/**
 * Deletes stored large payloads older than `olderThanMs` (server clock). Returns how many.
 * Large-payload notifications already purge up to 100 expired rows each; call this from a
 * periodic job when few are sent. Default age 3,600,000 ms (1 h).
 */
export async function purgeListenerPayloads(
  q: Queryable,
  options: { schema?: string; olderThanMs?: number } = {},
): Promise<number> {
  const o = checkOptions('options', options);
  const schema = checkSchemaName(o.schema ?? DEFAULT_SCHEMA);
  const olderThanMs = optionalInt(
    'options.olderThanMs',
    o.olderThanMs,
    { min: 0, max: 365 * 86_400_000 },
    3_600_000,
  );
  try {
    await ensureMigrated(q, schema);
    const res = await q.query(
      `DELETE FROM ${quoteIdent(schema)}.listener_payloads
       WHERE created_at < now() - $1::bigint * interval '1 millisecond'`,
      [olderThanMs],
    );
    return res.rowCount ?? 0;
  } catch (err) {
    throw coerceError(err);
  }
}
