import pg from 'pg';
import { RateLimiter } from './src/index.js';
import { migrate } from './src/db/migrator.js';
const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/kvscratch', max: 10 });
await pool.query('drop schema if exists pgcoord cascade');
await migrate(pool);
for (const algorithm of ['fixed-window','sliding-window','token-bucket','leaky-bucket','gcra'] as const) {
  for (const unlogged of [false, true]) {
  for (const conc of [16, 64]) {
    const rl = new RateLimiter(pool, { algorithm, limit: 1_000_000, periodMs: 1000, unlogged, maxInFlight: Number(process.env.MIF ?? 2) });
    await rl.consume('warm');
    let n = 0; const lat: number[] = [];
    const end = performance.now() + 1500;
    await Promise.all(Array.from({ length: conc }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await rl.consume('k' + Math.floor(Math.random() * 1000));
        lat.push(performance.now() - t); n++;
      }
    }));
    lat.sort((a, b) => a - b);
    console.log(algorithm, unlogged ? 'unlogged' : 'durable', conc, Math.round(n / 1.5), 'p99', lat[Math.floor(lat.length * 0.99)]!.toFixed(2));
  }}
}
await pool.end();
