// listen: LISTEN/NOTIFY side by side, in one run: a bare pg.Client, pg-listen (defaults) and the
// pgcoord Listener. Latency at a steady rate, throughput of per-statement NOTIFY vs pgcoord's
// coalescing notify with 8 concurrent senders, recovery after pg_terminate_backend, and a server
// outage of a private instance (pgcoord with a backlog handler vs pg-listen with its defaults).
import pgListenImport from 'pg-listen';
import pg from 'pg';
import { Listener, notify } from '../../src/index.js';
import { startInstance } from '../../test/helpers/pg-instance.js';
import { packageVersion, quantile, type BenchResult, type Scenario } from '../lib.js';

// pg-listen is CommonJS with an `exports.default`: take the function whichever interop applies.
const createSubscriber = ((pgListenImport as unknown as { default?: unknown }).default ??
  pgListenImport) as typeof pgListenImport.default;

const RATE_PER_S = 2_000;
const SENDERS = 8;
const SETTLE_MS = 1_100;

type System = 'bare pg.Client' | 'pg-listen' | 'pgcoord';

/** A receiver under test: subscribe, then report each payload; close when done. */
interface Receiver {
  close(): Promise<void>;
}

async function bareReceiver(
  url: string,
  channel: string,
  onPayload: (p: string) => void,
): Promise<Receiver> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  client.on('notification', (n) => onPayload(n.payload ?? ''));
  await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
  return { close: () => client.end() };
}

async function pgListenReceiver(
  url: string,
  channel: string,
  onPayload: (p: string) => void,
): Promise<Receiver> {
  // Defaults, except parse: payloads here are plain strings, not JSON.
  const sub = createSubscriber({ connectionString: url }, { parse: (s: string) => s });
  sub.events.on('error', () => undefined);
  sub.notifications.on(channel, (p: string) => onPayload(p));
  await sub.connect();
  await sub.listenTo(channel);
  return { close: () => sub.close() };
}

async function pgcoordReceiver(
  url: string,
  channel: string,
  onPayload: (p: string) => void,
): Promise<Receiver> {
  const listener = new Listener({ connection: url });
  listener.on('error', () => undefined);
  listener.handle(channel, (p) => onPayload(p));
  await listener.start();
  return { close: () => listener.stop() };
}

const receivers: Record<System, typeof bareReceiver> = {
  'bare pg.Client': bareReceiver,
  'pg-listen': pgListenReceiver,
  pgcoord: pgcoordReceiver,
};

/**
 * Latency at a steady rate, all systems at once: one sender, one channel, and every receiver
 * LISTENing to it in this process, so a stall of the shared machine hits them all at the same
 * moment. Each payload is a sequence number whose send time is kept here. `order` is the order in
 * which receivers subscribe (rotated between rounds, so none is always first).
 */
export async function latency(
  url: string,
  order: System[],
  seconds: number,
): Promise<Map<System, number[]>> {
  const channel = 'latency';
  const sentAt: number[] = [];
  const samples = new Map<System, number[]>(order.map((s) => [s, []]));
  const recvs: Receiver[] = [];
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => undefined);
  try {
    for (const system of order) {
      const mine = samples.get(system)!;
      recvs.push(
        await receivers[system](url, channel, (p) => {
          const t = sentAt[Number(p)];
          if (t !== undefined) mine.push(performance.now() - t);
        }),
      );
    }
    // Warm the pool's connections so dials do not count as latency.
    await Promise.all([1, 2, 3, 4].map(() => pool.query('SELECT 1')));
    const total = Math.round(RATE_PER_S * seconds);
    const t0 = performance.now();
    let seq = 0;
    const inflight: Array<Promise<unknown>> = [];
    while (seq < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE_PER_S));
      while (seq < due) {
        const n = seq++;
        sentAt[n] = performance.now();
        inflight.push(pool.query('SELECT pg_notify($1, $2)', [channel, String(n)]));
      }
      if (inflight.length > 500) await Promise.all(inflight.splice(0));
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(inflight);
    const deadline = performance.now() + 5_000;
    while ([...samples.values()].some((x) => x.length < total) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    // Drop the first 5% of each (warm-up).
    for (const [system, x] of samples) samples.set(system, x.slice(Math.floor(total * 0.05)));
    return samples;
  } finally {
    await pool.end();
    for (const r of recvs) await r.close();
  }
}

/**
 * Throughput with SENDERS concurrent senders, each keeping `outstanding` notifications in flight,
 * for `seconds`. Returns notifications delivered per second, counted at the receiver from the
 * first send until the last one arrived (so a listener that falls behind is charged for it).
 */
export async function throughput(
  url: string,
  mode: 'per-statement' | 'pgcoord notify',
  seconds: number,
  outstanding: number,
  maxInFlight?: number,
): Promise<{
  deliveredPerS: number;
  elapsedMs: number;
  sent: number;
  delivered: number;
  drainMs: number;
}> {
  const channel = `tp_${mode === 'per-statement' ? 'bare' : 'pgcoord'}_${outstanding}`;
  let delivered = 0;
  let lastAt = 0;
  const onPayload = () => {
    delivered++;
    lastAt = performance.now();
  };
  const recv =
    mode === 'per-statement'
      ? await bareReceiver(url, channel, onPayload)
      : await pgcoordReceiver(url, channel, onPayload);
  const pool = new pg.Pool({ connectionString: url, max: SENDERS });
  pool.on('error', () => undefined);
  try {
    await Promise.all(Array.from({ length: SENDERS }, () => pool.query('SELECT 1')));
    let sent = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    const send =
      mode === 'per-statement'
        ? (p: string) => pool.query('SELECT pg_notify($1, $2)', [channel, p])
        : (p: string) => notify(pool, channel, p, maxInFlight ? { maxInFlight } : {});
    const worker = async (w: number) => {
      let i = 0;
      while (performance.now() < end) {
        await send(`${w}:${i++}`);
        sent++;
      }
    };
    await Promise.all(Array.from({ length: SENDERS * outstanding }, (_, k) => worker(k)));
    const sendEnd = performance.now();
    const deadline = sendEnd + 10_000;
    while (delivered < sent && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    return {
      deliveredPerS: (delivered / (Math.max(lastAt, sendEnd) - t0)) * 1000,
      elapsedMs: Math.max(lastAt, sendEnd) - t0,
      sent,
      delivered,
      drainMs: Math.max(0, lastAt - sendEnd),
    };
  } finally {
    await pool.end();
    await recv.close();
  }
}

async function terminateByApp(pool: pg.Pool, app: string): Promise<number> {
  const { rowCount } = await pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
    [app],
  );
  return rowCount ?? 0;
}

/** Median time from pg_terminate_backend of the listening connection to listening again. */
async function recovery(url: string, system: 'pg-listen' | 'pgcoord', rounds: number) {
  const app = `bench_recovery_${system.replace(/\W/g, '_')}`;
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  admin.on('error', () => undefined);
  const times: number[] = [];
  let waitBack: () => Promise<void>;
  let close: () => Promise<void>;
  if (system === 'pgcoord') {
    const listener = new Listener({ connection: url, applicationName: app });
    listener.on('error', () => undefined);
    listener.handle('recovery', () => undefined);
    await listener.start();
    waitBack = () => new Promise((r) => listener.once('connect', () => r()));
    close = () => listener.stop();
  } else {
    const sub = createSubscriber({ connectionString: url, application_name: app });
    sub.events.on('error', () => undefined);
    await sub.connect();
    await sub.listenTo('recovery');
    // pg-listen emits 'connected' once it has reconnected and re-LISTENed.
    waitBack = () => new Promise((r) => sub.events.once('connected', () => r()));
    close = () => sub.close();
  }
  try {
    for (let i = 0; i < rounds; i++) {
      // Space the kills out: back-to-back kills within 1 s are a flapping server, which pgcoord
      // answers with backoff on purpose.
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const back = Promise.race([
        waitBack().then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 15_000)),
      ]);
      const t0 = performance.now();
      if ((await terminateByApp(admin, app)) !== 1) throw new Error(`${system}: no backend found`);
      if (!(await back)) throw new Error(`${system} did not come back within 15 s`);
      times.push(performance.now() - t0);
    }
  } finally {
    await close().catch(() => undefined);
    await admin.end();
  }
  return { median: quantile(times, 0.5), max: Math.max(...times), times };
}

/**
 * A server outage on a private instance: a producer inserts a row and NOTIFYs its id every 10 ms;
 * the instance is stopped for `outageS` seconds and started again. pgcoord runs a backlog handler
 * over the table; pg-listen (defaults) can only see notifications. Counts what each missed.
 */
async function outage(outageS: number, log: (m: string) => void) {
  const inst = await startInstance();
  const url = inst.url();
  const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 1_000 });
  pool.on('error', () => undefined);
  let producing = true;
  const committed = new Set<number>();
  const seenPgcoord = new Set<number>();
  const seenPgListen = new Set<number>();
  let lastId = 0;
  const listener = new Listener({ connection: url });
  listener.on('error', () => undefined);
  const reader = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 1_000 });
  reader.on('error', () => undefined);
  const drain = async () => {
    const { rows } = await reader.query<{ id: number }>(
      'SELECT id FROM items WHERE id > $1 ORDER BY id',
      [lastId],
    );
    for (const r of rows) {
      seenPgcoord.add(r.id);
      lastId = r.id;
    }
  };
  let pgListenGaveUp = false;
  const sub = createSubscriber({ connectionString: url });
  try {
    await pool.query('CREATE TABLE items (id serial PRIMARY KEY)');
    listener.handle('items', drain, { backlog: drain });
    listener.on('handler:error', () => undefined);
    await listener.start();
    sub.events.on('error', () => (pgListenGaveUp = true));
    sub.notifications.on('items', (id: number) => seenPgListen.add(Number(id)));
    await sub.connect();
    await sub.listenTo('items');

    const producer = (async () => {
      while (producing) {
        try {
          const { rows } = await pool.query<{ id: number }>(
            `WITH i AS (INSERT INTO items DEFAULT VALUES RETURNING id)
             SELECT id, pg_notify('items', id::text) FROM i`,
          );
          committed.add(rows[0]!.id);
        } catch {
          // The server is down: nothing committed; try again.
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 1_000));
    const lost = new Promise<void>((r) => listener.once('disconnect', () => r()));
    inst.stop('fast');
    await lost;
    log(`outage: server stopped for ${outageS} s`);
    await new Promise((r) => setTimeout(r, outageS * 1000));
    inst.start();
    const t0 = performance.now();
    while (!listener.listening && performance.now() - t0 < 30_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const resumeMs = listener.listening ? performance.now() - t0 : NaN;
    await new Promise((r) => setTimeout(r, 2_000));
    producing = false;
    await producer;
    const t1 = performance.now();
    while (seenPgcoord.size < committed.size && performance.now() - t1 < 10_000) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const missing = (seen: Set<number>) => [...committed].filter((id) => !seen.has(id)).length;
    return {
      committed: committed.size,
      pgcoordLost: missing(seenPgcoord),
      pgListenLost: missing(seenPgListen),
      pgcoordResumed: listener.listening,
      pgListenGaveUp,
      resumeMs,
    };
  } finally {
    producing = false;
    await listener.stop();
    await Promise.race([sub.close(), new Promise((r) => setTimeout(r, 2_000))]).catch(
      () => undefined,
    );
    await reader.end().catch(() => undefined);
    await pool.end().catch(() => undefined);
    inst.destroy();
  }
}

const scenario: Scenario = {
  name: 'listen',
  description:
    'LISTEN/NOTIFY: bare pg.Client vs pg-listen vs pgcoord Listener: latency at 2,000/s, 8-sender throughput (per-statement NOTIFY vs coalescing notify), recovery after pg_terminate_backend and a server outage',
  async run(ctx) {
    const results: BenchResult[] = [];
    const pgListenVersion = `pg-listen ${packageVersion('pg-listen')}`;
    const noteOf: Record<System, string> = {
      'bare pg.Client': `pg ${packageVersion('pg')}`,
      'pg-listen': `${pgListenVersion}, defaults`,
      pgcoord: 'Listener, defaults',
    };

    // 1. Latency at a steady 2,000/s, the three receivers on the same stream at the same time.
    const rounds = ctx.quick ? 3 : 6;
    const seconds = ctx.quick ? 2 : 5;
    const systems: System[] = ['bare pg.Client', 'pg-listen', 'pgcoord'];
    const lat = new Map<System, number[]>(systems.map((s) => [s, []]));
    for (let r = 0; r < rounds; r++) {
      const order = systems.map((_, i) => systems[(i + r) % systems.length]!);
      const round = await latency(ctx.url, order, seconds);
      for (const s of systems) lat.get(s)!.push(...round.get(s)!);
    }
    for (const s of systems) {
      const samples = lat.get(s)!;
      const p50 = quantile(samples, 0.5);
      const p99 = quantile(samples, 0.99);
      ctx.log(
        `${s}: p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms (${samples.length} samples)`,
      );
      const note = `${noteOf[s]}; ${samples.length} samples at ${RATE_PER_S}/s, all three receivers on one stream at once`;
      results.push({ system: s, metric: 'latency_p50_ms', value: p50, note });
      results.push({ system: s, metric: 'latency_p99_ms', value: p99, note });
    }

    // 2. Throughput, 8 senders: per-statement NOTIFY vs pgcoord's coalescing notify(). Short
    // slices alternate between the two, so the machine's noise falls on both alike.
    const tpRounds = ctx.quick ? 3 : 6;
    const tpSeconds = ctx.quick ? 1 : 2;
    for (const outstanding of [1, 16]) {
      const metric = `delivered_per_s_8_senders_x${outstanding}`;
      const modes = ['per-statement', 'pgcoord notify'] as const;
      const sum = new Map(modes.map((m) => [m, { sent: 0, delivered: 0, ms: 0, drainMs: 0 }]));
      for (let r = 0; r < tpRounds; r++) {
        for (const mode of modes) {
          const x = await throughput(ctx.url, mode, tpSeconds, outstanding);
          const acc = sum.get(mode)!;
          acc.sent += x.sent;
          acc.delivered += x.delivered;
          acc.ms += x.elapsedMs;
          acc.drainMs = Math.max(acc.drainMs, x.drainMs);
        }
      }
      for (const mode of modes) {
        const acc = sum.get(mode)!;
        const perS = (acc.delivered / acc.ms) * 1000;
        ctx.log(
          `${mode} x${outstanding}: sent ${acc.sent}, delivered ${acc.delivered}, ${Math.round(perS)}/s, drained at most ${Math.round(acc.drainMs)} ms after the senders stopped`,
        );
        results.push({
          system: mode === 'per-statement' ? 'bare NOTIFY per statement' : 'pgcoord notify',
          metric,
          value: perS,
          note: `${SENDERS} senders x ${outstanding} in flight, ${tpRounds} x ${tpSeconds} s alternating; delivered ${acc.delivered}/${acc.sent}; receiver (${mode === 'per-statement' ? 'bare pg.Client' : 'pgcoord Listener'}) done <= ${Math.round(acc.drainMs)} ms after senders stopped`,
        });
      }
    }

    // 3. Recovery after pg_terminate_backend of the listening connection.
    const recRounds = ctx.quick ? 5 : 15;
    for (const s of ['pg-listen', 'pgcoord'] as const) {
      const r = await recovery(ctx.url, s, recRounds);
      ctx.log(`${s} recovery: median ${r.median.toFixed(1)} ms, max ${r.max.toFixed(1)} ms`);
      results.push({
        system: s,
        metric: 'recovery_after_terminate_ms_median',
        value: r.median,
        note: `${noteOf[s]}; ${recRounds} terminations ${SETTLE_MS} ms apart, max ${r.max.toFixed(0)} ms`,
      });
    }
    results.push({
      system: 'bare pg.Client',
      metric: 'recovery_after_terminate_ms_median',
      value: Infinity,
      note: 'never: the client ends and LISTEN is gone until the application notices',
    });

    // 4. A server outage on a private instance.
    const outageS = ctx.quick ? 5 : 10;
    const o = await outage(outageS, ctx.log);
    ctx.log(
      `outage ${outageS} s: committed ${o.committed}; pgcoord lost ${o.pgcoordLost}, resumed ${o.pgcoordResumed} after ${o.resumeMs.toFixed(0)} ms; pg-listen lost ${o.pgListenLost}, gave up ${o.pgListenGaveUp}`,
    );
    const outageNote = `${outageS} s outage of a private instance${ctx.quick ? ' (quick mode; full mode: 10 s)' : ''}, ${o.committed} rows committed`;
    results.push({
      system: 'pg-listen',
      metric: 'outage_resumed',
      value: o.pgListenGaveUp ? 0 : 1,
      note: `${noteOf['pg-listen']}; ${o.pgListenGaveUp ? 'gave up (retryTimeout 3 s) and emitted error' : 'resumed'}; ${outageNote}`,
    });
    results.push({
      system: 'pgcoord',
      metric: 'outage_resumed',
      value: o.pgcoordResumed ? 1 : 0,
      note: `listening again ${o.resumeMs.toFixed(0)} ms after the server started; ${outageNote}`,
    });
    results.push({
      system: 'pg-listen',
      metric: 'outage_items_lost',
      value: o.pgListenLost,
      note: `notifications only (no backlog hook); ${outageNote}`,
    });
    results.push({
      system: 'pgcoord',
      metric: 'outage_items_lost',
      value: o.pgcoordLost,
      note: `backlog handler over the table; ${outageNote}`,
    });
    return results;
  },
};

export default scenario;
