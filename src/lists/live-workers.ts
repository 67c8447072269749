// The live-workers table (migration 0013): a row per running Worker, refreshed by the worker,
// read by AttemptList.workers(), the service and the CLI.
import os from 'node:os';
import type { EventEmitter } from 'node:events';
import {
  quoteIdent,
  reportError,
  type Logger,
  type Queryable,
  type StatementRunner,
} from '../core/index.js';

/** A running worker, as its row in the live-workers table says ({@link AttemptList.workers}). */
export interface LiveWorker {
  /** The worker's id ({@link Worker.id}): a random UUID. */
  id: string;
  /** The list it works. */
  list: string;
  /** The host it runs on (`os.hostname()`). */
  host: string;
  /** Its process id. */
  pid: number;
  /** Most handlers it runs at once. */
  concurrency: number;
  /** Handlers running at its last refresh. */
  inFlight: number;
  /** When it started, on the server clock. */
  startedAt: Date;
  /** Its last refresh, on the server clock. */
  heartbeatAt: Date;
}

/** What a worker writes on each refresh. */
export interface LiveWorkerBeat {
  id: string;
  list: string;
  concurrency: number;
  inFlight: number;
  /** The row stops counting as live this long after this refresh, ms. */
  ttlMs: number;
  /** The start time the first refresh returned (kept when the row is written again). */
  startedAt: Date | undefined;
}

interface Row {
  id: string;
  list: string;
  host: string;
  pid: number;
  concurrency: number;
  in_flight: number;
  started_at: Date;
  heartbeat_at: Date;
}

/**
 * The statements of the live-workers table of one schema. A refresh is one statement: it upserts
 * the worker's own row (re-inserting it if it was pruned meanwhile, say after an outage longer
 * than its horizon) and deletes the expired rows of other workers, skipping rows another
 * refresh has locked, so two refreshes never wait for each other (nor deadlock).
 */
export class LiveWorkers {
  private readonly statements: StatementRunner;
  private readonly sql: ReturnType<typeof buildLiveSql>;
  private readonly host = os.hostname();

  constructor(statements: StatementRunner) {
    this.statements = statements;
    this.sql = buildLiveSql(statements.schema);
  }

  /**
   * Writes a worker's row and prunes expired ones. Not retried here: the worker's next refresh
   * is the retry. Returns the row's start time and how many expired rows were deleted.
   */
  async beat(b: LiveWorkerBeat): Promise<{ startedAt: Date; pruned: number }> {
    return this.statements.run(async (q) => {
      const { rows } = await q.query<{ started_at: Date; pruned: number }>(this.sql.beat, [
        b.id,
        b.list,
        this.host,
        process.pid,
        b.concurrency,
        b.inFlight,
        b.startedAt ?? null,
        b.ttlMs,
      ]);
      return { startedAt: rows[0]!.started_at, pruned: rows[0]!.pruned };
    });
  }

  /** Deletes a worker's row (it stopped). Safe to repeat, so retried on a connection failure. */
  async remove(id: string): Promise<void> {
    await this.statements.run((q) => q.query(this.sql.remove, [id]), { idempotent: true });
  }

  /** The live workers (of `list`, or every list), by list, then start time. */
  async read(list: string | undefined, tx: Queryable | undefined): Promise<LiveWorker[]> {
    return this.statements.run(
      async (q) => {
        const { rows } = await q.query<Row>(this.sql.read, [list ?? null]);
        return rows.map((r) => ({
          id: r.id,
          list: r.list,
          host: r.host,
          pid: r.pid,
          concurrency: r.concurrency,
          inFlight: r.in_flight,
          startedAt: r.started_at,
          heartbeatAt: r.heartbeat_at,
        }));
      },
      { tx, idempotent: true },
    );
  }
}

function buildLiveSql(schema: string) {
  const t = `${quoteIdent(schema)}.list_workers`;
  return {
    // $7: the start time of an earlier write (NULL the first time); $8: the horizon, ms.
    beat: `WITH pruned AS (
        DELETE FROM ${t} WHERE id IN (
          SELECT id FROM ${t}
           WHERE expires_at < statement_timestamp() AND id <> $1::uuid
           FOR UPDATE SKIP LOCKED)
        RETURNING 1
      ), beat AS (
        INSERT INTO ${t} AS w
          (id, list, host, pid, concurrency, in_flight, started_at, heartbeat_at, expires_at)
        VALUES ($1::uuid, $2::text, $3::text, $4::int, $5::int, $6::int,
          coalesce($7::timestamptz, statement_timestamp()), statement_timestamp(),
          statement_timestamp() + $8::float8 * interval '1 millisecond')
        ON CONFLICT (id) DO UPDATE SET in_flight = EXCLUDED.in_flight,
          heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at
        RETURNING w.started_at
      )
      SELECT (SELECT started_at FROM beat) AS started_at, (SELECT count(*) FROM pruned)::int AS pruned`,
    remove: `DELETE FROM ${t} WHERE id = $1::uuid`,
    read: `SELECT id::text AS id, list, host, pid, concurrency, in_flight, started_at, heartbeat_at
      FROM ${t}
      WHERE expires_at > statement_timestamp() AND ($1::text IS NULL OR list = $1::text)
      ORDER BY list, started_at, id`,
  };
}

/** What a {@link LiveRow} writes and whom it tells. */
export interface LiveRowOptions {
  live: LiveWorkers;
  id: string;
  list: string;
  concurrency: number;
  /** Handlers running now (read at each refresh). */
  inFlight: () => number;
  ttlMs: number;
  intervalMs: number;
  /** The worker: gets 'live' after each refresh, and the reported errors. */
  emitter: EventEmitter;
  logger: Logger;
}

/**
 * One worker's live row: written at start and every `intervalMs` (pruning expired rows with
 * it), deleted at stop. Off the claim path; a failed refresh is reported and left to the next.
 */
export class LiveRow {
  private timer: ReturnType<typeof setInterval> | undefined;
  private writing: Promise<void> | undefined;
  /** When the row was first written (server clock), kept if it must be written again. */
  private startedAt: Date | undefined;

  constructor(private readonly o: LiveRowOptions) {}

  /** Writes the row now and then every `intervalMs`. */
  start(): void {
    this.startedAt = undefined;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), this.o.intervalMs);
    // The claim loop holds the process while the worker runs; this timer need not.
    this.timer.unref();
  }

  /** Stops refreshing and deletes the row (a failure is reported: it expires after ttlMs). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    // After the last refresh has landed, so none can write the row again once it is gone.
    await this.writing;
    try {
      await this.o.live.remove(this.o.id);
    } catch (err) {
      reportError(this.o.emitter, this.o.logger, err, 'worker could not delete its live row', {
        list: this.o.list,
      });
    }
  }

  private refresh(): void {
    if (this.writing) return;
    const o = this.o;
    this.writing = (async () => {
      try {
        const r = await o.live.beat({
          id: o.id,
          list: o.list,
          concurrency: o.concurrency,
          inFlight: o.inFlight(),
          ttlMs: o.ttlMs,
          startedAt: this.startedAt,
        });
        this.startedAt ??= r.startedAt;
        o.emitter.emit('live', { pruned: r.pruned });
      } catch (err) {
        reportError(o.emitter, o.logger, err, 'worker could not refresh its live row', {
          list: o.list,
        });
      } finally {
        this.writing = undefined;
      }
    })();
  }
}
