// Key-value throughput (get / set / uncontended checkAndSet at concurrency 16 and 64 over 1,000
// keys) and compare-and-set under contention (16 writers incrementing one key): pgcoord's
// KvStore against the same operations as ratelimit's PostgreSQL backend issues them through pg
// (client-side expiry check on get; read-then-CAS retry loop under contention).
import { KvStore, migrate } from '../../src/index.js';
import { quantile, type BenchResult, type Scenario } from '../lib.js';
import { drive } from './ratelimit.js';

const KEYS = 1000;
const POOL_SIZE = 10;

const scenario: Scenario = {
  name: 'kv',
  description:
    'KV get/set/checkAndSet ops/s and p99 at concurrency 16 and 64 over 1,000 keys, and successful updates/s of 16 writers on one key: pgcoord vs ratelimit-style statements through pg',
  async run(ctx) {
    const warmMs = ctx.quick ? 250 : 1000;
    const durationMs = ctx.quick ? 1000 : 4000;
    const results: BenchResult[] = [];
    const pool = ctx.pool({ max: POOL_SIZE });
    await migrate(pool);
    await pool.query(
      `CREATE TABLE ratelimit_kv (key text PRIMARY KEY, value text NOT NULL, expires_at timestamptz)`,
    );
    const kv = new KvStore(pool);
    const entries = Array.from({ length: KEYS }, (_, i) => ({ key: `key-${i}`, value: '0' }));
    await kv.setMany(entries);
    await pool.query(
      `INSERT INTO ratelimit_kv SELECT 'key-' || g, '0', NULL FROM generate_series(0, $1) g`,
      [KEYS - 1],
    );

    const record = (
      system: string,
      metric: string,
      r: { perSecond: number; p99: number },
      note?: string,
    ) => {
      ctx.log(`${metric} ${system}: ${Math.round(r.perSecond)}/s p99 ${r.p99.toFixed(2)} ms`);
      results.push({ system, metric: `${metric}_per_s`, value: r.perSecond, note });
      results.push({ system, metric: `${metric}_p99_ms`, value: r.p99 });
    };
    const ratelimitNote = 'ratelimit-style statements through pg (prepared)';

    for (const c of [16, 64]) {
      record('pgcoord', `get@c${c}`, await drive(c, warmMs, durationMs, (k) => kv.get(k)));
      record(
        'ratelimit-style',
        `get@c${c}`,
        await drive(c, warmMs, durationMs, async (k) => {
          // ratelimit's Get: fetch value and expiry, decide expiry on the client's clock.
          const { rows } = await pool.query<{ value: string; expires_at: Date | null }>({
            name: 'rl-get',
            text: 'SELECT value, expires_at FROM ratelimit_kv WHERE key = $1',
            values: [k],
          });
          const r = rows[0];
          return r && (r.expires_at === null || r.expires_at.getTime() > Date.now()) ? r.value : '';
        }),
        ratelimitNote,
      );
      record(
        'pgcoord',
        `set@c${c}`,
        await drive(c, warmMs, durationMs, (k) => kv.set(k, 'v', { ttlMs: 600_000 })),
      );
      record(
        'ratelimit-style',
        `set@c${c}`,
        await drive(c, warmMs, durationMs, (k) =>
          pool.query({
            name: 'rl-set',
            text: `INSERT INTO ratelimit_kv VALUES ($1, $2, now() + $3::interval)
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
            values: [k, 'v', '600 seconds'],
          }),
        ),
        ratelimitNote,
      );
      // Uncontended compare-and-set: each caller owns its keys and knows their current value.
      const owned = (
        system: string,
        cas: (key: string, from: string | undefined, to: string) => Promise<boolean>,
      ) => {
        const values = new Map<string, string>();
        return drive(c, warmMs, durationMs, async (_key, worker) => {
          const key = `cas-${c}-${worker}-${Math.floor(Math.random() * Math.floor(KEYS / c))}`;
          const from = values.get(key);
          const to = String(Number(from ?? 0) + 1);
          if (!(await cas(key, from, to)))
            throw new Error(`${system}: uncontended CAS failed on ${key}`);
          values.set(key, to);
        });
      };
      record(
        'pgcoord',
        `cas@c${c}`,
        await owned('pgcoord', (k, from, to) => kv.checkAndSet(k, from, to)),
      );
      record(
        'ratelimit-style',
        `cas@c${c}`,
        await owned('ratelimit-style', async (k, from, to) => {
          const res =
            from === undefined
              ? await pool.query({
                  name: 'rl-cas-absent',
                  text: `INSERT INTO ratelimit_kv AS t VALUES ($1, $2, NULL) ON CONFLICT (key) DO UPDATE
                         SET value = EXCLUDED.value, expires_at = NULL
                         WHERE t.expires_at IS NOT NULL AND t.expires_at <= now()`,
                  values: [k, to],
                })
              : await pool.query({
                  name: 'rl-cas',
                  text: `UPDATE ratelimit_kv SET value = $3, expires_at = NULL
                         WHERE key = $1 AND value = $2 AND (expires_at IS NULL OR expires_at > now())`,
                  values: [k, from, to],
                });
          return res.rowCount === 1;
        }),
        ratelimitNote,
      );
    }

    // Contention: 16 writers increment one key; count successful updates, check none was lost.
    const writers = 16;
    const contended = async (
      system: string,
      reset: () => Promise<void>,
      increment: () => Promise<void>,
      read: () => Promise<string | undefined>,
      note: string,
    ) => {
      await reset();
      let done = 0;
      const latencies: number[] = [];
      const end = performance.now() + durationMs;
      await Promise.all(
        Array.from({ length: writers }, async () => {
          while (performance.now() < end) {
            const t = performance.now();
            await increment();
            latencies.push(performance.now() - t);
            done++;
          }
        }),
      );
      const final = Number(await read());
      if (final !== done)
        throw new Error(`${system}: lost updates (${final} stored, ${done} acknowledged)`);
      const r = { perSecond: done / (durationMs / 1000), p99: quantile(latencies, 0.99) };
      ctx.log(
        `cas contention ${system}: ${Math.round(r.perSecond)} updates/s p99 ${r.p99.toFixed(2)} ms`,
      );
      results.push({ system, metric: 'contended_updates_per_s', value: r.perSecond, note });
      results.push({ system, metric: 'contended_update_p99_ms', value: r.p99 });
    };

    await contended(
      'pgcoord update()',
      () => kv.set('hot', '0'),
      async () => {
        await kv.update('hot', (v) => String(Number(v ?? 0) + 1));
      },
      () => kv.get('hot'),
      `${writers} writers, one key; concurrent updates combined, one batched CAS per round`,
    );
    await contended(
      'pgcoord checkAndSet loop',
      () => kv.set('hot2', '0'),
      async () => {
        for (;;) {
          const cur = await kv.get('hot2');
          if (await kv.checkAndSet('hot2', cur, String(Number(cur) + 1))) return;
        }
      },
      () => kv.get('hot2'),
      `${writers} writers, one key; get then checkAndSet, retry at once`,
    );
    const rlGet = async (key: string) => {
      const { rows } = await pool.query<{ value: string; expires_at: Date | null }>({
        name: 'rl-get',
        text: 'SELECT value, expires_at FROM ratelimit_kv WHERE key = $1',
        values: [key],
      });
      return rows[0]?.value;
    };
    const rlCas = async (key: string, from: string, to: string) =>
      (
        await pool.query({
          name: 'rl-cas-loop',
          text: `UPDATE ratelimit_kv SET value = $3, expires_at = NULL
                 WHERE key = $1 AND value = $2 AND (expires_at IS NULL OR expires_at > now())`,
          values: [key, from, to],
        })
      ).rowCount === 1;
    for (const backoff of [false, true]) {
      const key = backoff ? 'hot-rl-backoff' : 'hot-rl';
      await contended(
        backoff ? 'ratelimit-style read-then-CAS (backoff)' : 'ratelimit-style read-then-CAS',
        async () => {
          await pool.query(`INSERT INTO ratelimit_kv VALUES ($1, '0', NULL)`, [key]);
        },
        async () => {
          for (let attempt = 0; ; attempt++) {
            const cur = (await rlGet(key))!;
            if (await rlCas(key, cur, String(Number(cur) + 1))) return;
            if (backoff) {
              // Jittered exponential backoff, 1 ms doubling to 16 ms, as optimistic limiters do.
              const cap = Math.min(16, 2 ** Math.min(attempt, 4));
              await new Promise((r) => setTimeout(r, Math.random() * cap));
            }
          }
        },
        () => rlGet(key),
        `${writers} writers, one key; get then CAS, ${backoff ? 'jittered backoff 1-16 ms' : 'retry at once'}`,
      );
    }
    return results;
  },
};

export default scenario;
