// changes: change capture side by side with a dapper-like design (an AFTER ROW trigger that
// pg_notify()s {"tbl","id","op"} per row, read by a LISTENing client), in one run:
// - write overhead: 8 writers doing single-row INSERTs on an untracked table, a pgcoord-tracked
//   table and a dapper-notifying table;
// - delivery: sustained end-to-end throughput for one group (live writes), and catch-up of a
//   backlog;
// - latency commit -> handler at a steady 2,000 changes/s;
// - a fault run: the reader's connection is terminated and it stays away for a while; how many
//   changes each design never delivers.
import pg from 'pg';
import { ChangeCapture, ChangeConsumer, type Change } from '../../src/index.js';
import { quantile, type BenchResult, type Scenario } from '../lib.js';

const WRITERS = 8;
const RATE_PER_S = 2_000;
const TICK_MS = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function client(url: string, name = 'bench-changes'): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: name });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** 8 writers, single-row autocommit INSERTs, for `ms`: returns inserts per second. */
async function insertRate(url: string, table: string, ms: number): Promise<number> {
  const clients = await Promise.all(Array.from({ length: WRITERS }, () => client(url)));
  let n = 0;
  const deadline = performance.now() + ms;
  const start = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < deadline) {
        await c.query(`INSERT INTO ${table} (v, batch) VALUES ($1, 0)`, [n]);
        n++;
      }
    }),
  );
  const rate = n / ((performance.now() - start) / 1000);
  await Promise.all(clients.map((c) => c.end()));
  return rate;
}

/** A LISTENing reader of the dapper notifications that reconnects after `awayMs` when cut. */
class DapperReader {
  received = new Set<number>();
  onPayload: (id: number) => void = () => undefined;
  private c: pg.Client | undefined;
  private closed = false;
  awayMs = 0;
  constructor(private readonly url: string) {}
  async open(): Promise<void> {
    const c = await client(this.url, 'bench-dapper-reader');
    c.on('notification', (m) => {
      const id = (JSON.parse(m.payload ?? '{}') as { id: number }).id;
      this.received.add(id);
      this.onPayload(id);
    });
    c.on('end', () => {
      if (this.closed) return;
      void sleep(this.awayMs).then(() => (this.closed ? undefined : this.open()));
    });
    await c.query('LISTEN dapper');
    this.c = c;
  }
  async close(): Promise<void> {
    this.closed = true;
    await this.c?.end().catch(() => undefined);
  }
}

async function setup(url: string): Promise<void> {
  const c = await client(url);
  await c.query(`
    CREATE TABLE plain (id bigserial PRIMARY KEY, v int NOT NULL, batch int NOT NULL);
    CREATE TABLE tracked (id bigserial PRIMARY KEY, v int NOT NULL, batch int NOT NULL);
    CREATE TABLE dapper (id bigserial PRIMARY KEY, v int NOT NULL, batch int NOT NULL);
    CREATE FUNCTION dapper_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('dapper', json_build_object('tbl', TG_TABLE_NAME,
        'id', CASE WHEN TG_OP = 'DELETE' THEN 0 ELSE NEW.id END, 'op', TG_OP)::text);
      RETURN NULL;
    END $$;
    CREATE TRIGGER dapper_notify AFTER INSERT OR UPDATE OR DELETE ON dapper
      FOR EACH ROW EXECUTE FUNCTION dapper_notify();`);
  await c.end();
}

/**
 * Paced writer: every TICK_MS one statement inserting rate*TICK_MS/1000 rows tagged with a
 * batch number; records when each batch's commit returned. `during` runs alongside.
 */
async function pacedWrites(
  url: string,
  table: string,
  ms: number,
  committed: Map<number, number>,
  ids: Map<number, number> | undefined,
  during?: (elapsedMs: number) => Promise<void> | void,
): Promise<number> {
  const c = await client(url, 'bench-changes-writer');
  const perTick = (RATE_PER_S * TICK_MS) / 1000;
  const start = performance.now();
  let batch = 0;
  let written = 0;
  while (performance.now() - start < ms) {
    batch++;
    const r = await c.query<{ id: string }>(
      `INSERT INTO ${table} (v, batch) SELECT g, $1 FROM generate_series(1, $2::int) g RETURNING id`,
      [batch, perTick],
    );
    const at = performance.now();
    committed.set(batch, at);
    if (ids) for (const row of r.rows) ids.set(Number(row.id), batch);
    written += perTick;
    await during?.(at - start);
    const next = start + batch * TICK_MS;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
  }
  await c.end();
  return written;
}

function consumer(
  pool: pg.Pool,
  group: string,
  onChanges: (changes: Change[]) => void,
  extra: Partial<ConstructorParameters<typeof ChangeConsumer>[1]> = {},
): ChangeConsumer {
  const c = new ChangeConsumer(pool, {
    group,
    startFrom: 'now',
    batchSize: 1000,
    handler: async (changes) => onChanges(changes),
    logger: { warn: () => undefined, error: () => undefined },
    ...extra,
  });
  c.on('error', () => undefined);
  return c;
}

const scenario: Scenario = {
  name: 'changes',
  description:
    'change capture: write overhead, delivery throughput and latency, lost changes under a reader outage; pgcoord vs a dapper-like trigger + pg_notify design',
  async run(ctx) {
    const q = ctx.quick;
    const results: BenchResult[] = [];
    await setup(ctx.url);
    const admin = ctx.pool({ max: 2 });
    const capture = new ChangeCapture(admin);
    await capture.track('tracked');

    // 1. Write overhead: 8 writers, single-row INSERTs. Rounds alternate so drift hits all alike.
    const writeMs = q ? 1_500 : 4_000;
    const rounds = q ? 3 : 4;
    const rate = { plain: 0, tracked: 0, dapper: 0 };
    for (let i = 0; i < rounds; i++) {
      for (const t of ['plain', 'tracked', 'dapper'] as const) {
        rate[t] += (await insertRate(ctx.url, t, writeMs)) / rounds;
        ctx.log(`write ${t}: ${Math.round((rate[t] * rounds) / (i + 1))}/s`);
      }
    }
    const note = `${WRITERS} writers, single-row INSERT, ${rounds}x${writeMs / 1000}s; untracked ${Math.round(rate.plain)}/s`;
    results.push(
      {
        system: 'pgcoord',
        metric: 'insert_tps_vs_untracked_pct',
        value: (100 * rate.tracked) / rate.plain,
        note,
      },
      {
        system: 'dapper-like (pg_notify per row)',
        metric: 'insert_tps_vs_untracked_pct',
        value: (100 * rate.dapper) / rate.plain,
        note,
      },
      { system: 'pgcoord', metric: 'insert_tps', value: rate.tracked },
      { system: 'dapper-like (pg_notify per row)', metric: 'insert_tps', value: rate.dapper },
      { system: 'untracked table', metric: 'insert_tps', value: rate.plain },
    );
    await admin.query('TRUNCATE tracked, dapper');

    // 2. Delivery throughput, live: 4 writers of 200-row statements while one group consumes.
    const liveMs = q ? 3_000 : 10_000;
    const pool = ctx.pool({ max: 4, application_name: 'bench-cc-consumer' });
    {
      let delivered = 0;
      let lastAt = 0;
      const c = consumer(pool, 'throughput', (ch) => {
        delivered += ch.length;
        lastAt = performance.now();
      });
      await c.start();
      const writers = await Promise.all(Array.from({ length: 4 }, () => client(ctx.url)));
      let written = 0;
      const start = performance.now();
      await Promise.all(
        writers.map(async (w) => {
          while (performance.now() - start < liveMs) {
            await w.query(
              `INSERT INTO tracked (v, batch) SELECT g, 0 FROM generate_series(1, 200) g`,
            );
            written += 200;
          }
        }),
      );
      const wroteMs = performance.now() - start;
      const deadline = performance.now() + 60_000;
      while (delivered < written && performance.now() < deadline) await sleep(20);
      await c.stop();
      await Promise.all(writers.map((w) => w.end()));
      const ms = lastAt - start;
      ctx.log(
        `live: wrote ${written} in ${Math.round(wroteMs)} ms, delivered ${delivered} by ${Math.round(ms)} ms`,
      );
      results.push({
        system: 'pgcoord',
        metric: 'delivered_changes_per_s_live',
        value: delivered / (ms / 1000),
        note: `one ordered group, batch 1000, no-op handler; writers offered ${Math.round(written / (wroteMs / 1000))}/s`,
      });

      // The same live load on the dapper-like design: one LISTENing reader.
      {
        const reader = new DapperReader(ctx.url);
        let got = 0;
        let gotAt = 0;
        reader.onPayload = () => {
          got++;
          gotAt = performance.now();
        };
        await reader.open();
        const dw = await Promise.all(Array.from({ length: 4 }, () => client(ctx.url)));
        let dWritten = 0;
        const t0 = performance.now();
        await Promise.all(
          dw.map(async (w) => {
            while (performance.now() - t0 < liveMs) {
              await w.query(
                `INSERT INTO dapper (v, batch) SELECT g, 0 FROM generate_series(1, 200) g`,
              );
              dWritten += 200;
            }
          }),
        );
        const dWroteMs = performance.now() - t0;
        const d2 = performance.now() + 30_000;
        while (got < dWritten && performance.now() < d2) await sleep(20);
        await reader.close();
        await Promise.all(dw.map((w) => w.end()));
        results.push({
          system: 'dapper-like (pg_notify per row)',
          metric: 'delivered_changes_per_s_live',
          value: got / ((gotAt - t0) / 1000),
          note: `same writers offered ${Math.round(dWritten / (dWroteMs / 1000))}/s; ${got}/${dWritten} received`,
        });
      }

      // Catch-up: a new group from the beginning of what is retained.
      let caught = 0;
      let caughtAt = 0;
      const backlog = await admin.query<{ n: string }>(`SELECT count(*) AS n FROM pgcoord.changes`);
      const total = Number(backlog.rows[0]!.n);
      const t0 = performance.now();
      const cu = consumer(
        pool,
        'catch-up',
        (ch) => {
          caught += ch.length;
          caughtAt = performance.now();
        },
        { startFrom: 'beginning' },
      );
      await cu.start();
      while (caught < total && performance.now() - t0 < 60_000) await sleep(20);
      await cu.stop();
      results.push({
        system: 'pgcoord',
        metric: 'delivered_changes_per_s_backlog',
        value: caught / ((caughtAt - t0) / 1000),
        note: `${total} changes retained, new group from the beginning`,
      });
    }

    // 3. Latency at 2,000 changes/s, commit -> handler.
    const latMs = q ? 3_000 : 10_000;
    {
      const committed = new Map<number, number>();
      const lat: number[] = [];
      const c = consumer(pool, 'latency', (ch) => {
        const now = performance.now();
        for (const x of ch) {
          // Seen before the writer's commit call returned: delivered within the commit itself.
          const at = committed.get((x.new as { batch: number }).batch);
          lat.push(at === undefined ? 0 : now - at);
        }
      });
      await c.start();
      const written = await pacedWrites(ctx.url, 'tracked', latMs, committed, undefined);
      const deadline = performance.now() + 10_000;
      while (lat.length < written && performance.now() < deadline) await sleep(20);
      await c.stop();
      results.push(
        {
          system: 'pgcoord',
          metric: 'latency_p50_ms',
          value: quantile(lat, 0.5),
          note: `${RATE_PER_S}/s, default polling (50 ms)`,
        },
        {
          system: 'pgcoord',
          metric: 'latency_p99_ms',
          value: quantile(lat, 0.99),
          note: `${lat.length}/${written} delivered`,
        },
      );

      const dc = new Map<number, number>();
      const ids = new Map<number, number>();
      const dl: number[] = [];
      const reader = new DapperReader(ctx.url);
      reader.onPayload = (id) => {
        const b = ids.get(id);
        const at = b === undefined ? undefined : dc.get(b);
        dl.push(at === undefined ? 0 : performance.now() - at);
      };
      await reader.open();
      const dWritten = await pacedWrites(ctx.url, 'dapper', latMs, dc, ids);
      const d2 = performance.now() + 5_000;
      while (reader.received.size < dWritten && performance.now() < d2) await sleep(20);
      await reader.close();
      results.push(
        {
          system: 'dapper-like (pg_notify per row)',
          metric: 'latency_p50_ms',
          value: quantile(dl, 0.5),
        },
        {
          system: 'dapper-like (pg_notify per row)',
          metric: 'latency_p99_ms',
          value: quantile(dl, 0.99),
          note: `${dl.length}/${dWritten} delivered`,
        },
      );
    }

    // 4. Fault run: at 2,000/s for faultMs; a third of the way in, the reader's connections are
    // terminated and it stays away for awayMs. Then count what never arrives.
    const faultMs = q ? 3_000 : 8_000;
    const awayMs = q ? 1_000 : 2_000;
    {
      const seen = new Set<string>();
      const faultPool = ctx.pool({ max: 3, application_name: 'bench-cc-fault' });
      const c = consumer(faultPool, 'fault', (ch) => {
        for (const x of ch) seen.add(x.id);
      });
      await c.start();
      let cut = false;
      const committed = new Map<number, number>();
      const before = await admin.query<{ id: string }>(
        `SELECT coalesce(max(id), 0)::text AS id FROM pgcoord.changes`,
      );
      const written = await pacedWrites(
        ctx.url,
        'tracked',
        faultMs,
        committed,
        undefined,
        async (el) => {
          if (cut || el < faultMs / 3) return;
          cut = true;
          // The consumer goes away (stopped, its connections killed) and comes back after awayMs.
          void (async () => {
            await c.stop();
            await admin.query(
              `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'bench-cc-fault'`,
            );
            await sleep(awayMs);
            await c.start();
          })();
        },
      );
      const after = await admin.query<{ n: string }>(
        `SELECT count(*) AS n FROM pgcoord.changes WHERE id > $1::bigint AND table_name = 'tracked'`,
        [before.rows[0]!.id],
      );
      const captured = Number(after.rows[0]!.n);
      const deadline = performance.now() + 15_000;
      while (seen.size < captured && performance.now() < deadline) await sleep(20);
      await c.stop();
      if (seen.size < written) {
        const ids = await admin.query<{ id: string }>(
          `SELECT id::text FROM pgcoord.changes WHERE id > $1::bigint AND table_name = 'tracked' ORDER BY id`,
          [before.rows[0]!.id],
        );
        const missing = ids.rows.map((r) => r.id).filter((id) => !seen.has(id));
        const g = await admin.query(
          `SELECT low_water::text, delivered::text FROM pgcoord.change_groups WHERE group_name = 'fault'`,
        );
        ctx.log(
          `fault: written ${written}, captured ${captured}, seen ${seen.size}, missing ${missing.slice(0, 5).join(',')} (${missing.length}); group ${JSON.stringify(g.rows[0])}`,
        );
      }
      results.push({
        system: 'pgcoord',
        metric: 'changes_lost_in_fault_run',
        value: written - seen.size,
        note: `${written} written at ${RATE_PER_S}/s; reader away ${awayMs} ms`,
      });

      const reader = new DapperReader(ctx.url);
      reader.awayMs = awayMs;
      await reader.open();
      let dCut = false;
      const dWritten = await pacedWrites(
        ctx.url,
        'dapper',
        faultMs,
        new Map(),
        undefined,
        async (el) => {
          if (dCut || el < faultMs / 3) return;
          dCut = true;
          await admin.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'bench-dapper-reader'`,
          );
        },
      );
      await sleep(1_000);
      await reader.close();
      results.push({
        system: 'dapper-like (pg_notify per row)',
        metric: 'changes_lost_in_fault_run',
        value: dWritten - reader.received.size,
        note: `${dWritten} written; reconnects after ${awayMs} ms, no backlog`,
      });
    }
    return results;
  },
};

export default scenario;
