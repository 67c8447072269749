// Worker loops shared by the lists-import and lists-claim scenarios.
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AttemptList, type ClaimRef } from '../src/index.js';
import { itemName, type AnchorResult } from './anchors/lists-anchor.js';
import { quantile, runAnchor, type BenchResult, type ScenarioContext } from './lib.js';

export { itemName };

export function* items(count: number, offset = 0): Generator<string> {
  for (let i = 0; i < count; i++) yield itemName(offset + i);
}

/**
 * `workers` concurrent loops of completeAndClaim (complete the last batch and claim the next in
 * one round trip) until `count` items were claimed and completed. Returns items per second.
 */
export async function drainWithPgcoord(
  list: AttemptList,
  name: string,
  count: number,
  workers: number,
  batch: number,
): Promise<number> {
  let remaining = count;
  await warm(list, workers);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      let held: ClaimRef[] = [];
      for (;;) {
        const limit = Math.min(batch, remaining);
        remaining -= limit;
        const r = await list.completeAndClaim(name, held, { limit, leaseMs: 60_000 });
        remaining += limit - r.claims.length;
        if (r.stale.length > 0) throw new Error(`unexpected stale claims: ${r.stale.length}`);
        held = r.claims;
        if (held.length === 0) return;
      }
    }),
  );
  const ms = performance.now() - t0;
  if (remaining !== 0) throw new Error(`${remaining} items were not processed`);
  return (count / ms) * 1000;
}

/** Opens the pool's connections before the clock starts, so no system pays for connecting. */
async function warm(q: pg.Pool | AttemptList, workers: number): Promise<void> {
  if (q instanceof AttemptList) {
    await Promise.all(Array.from({ length: workers }, () => q.count('warm-up')));
  } else {
    await Promise.all(Array.from({ length: workers }, () => q.query('SELECT 1')));
  }
}

/** The bare SQL loop the issue names: 4 workers, `DELETE ... SKIP LOCKED ... RETURNING`, 100 per round trip. */
export async function drainBare(
  pool: pg.Pool,
  count: number,
  workers: number,
  batch: number,
): Promise<number> {
  let processed = 0;
  await warm(pool, workers);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (;;) {
        const { rowCount } = await pool.query(
          `DELETE FROM bare_queue WHERE id IN (
             SELECT id FROM bare_queue ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
           ) RETURNING item`,
          [batch],
        );
        processed += rowCount ?? 0;
        if (!rowCount) return;
      }
    }),
  );
  const ms = performance.now() - t0;
  if (processed !== count) throw new Error(`bare loop processed ${processed} of ${count}`);
  return (count / ms) * 1000;
}

/** A bare COPY of the same (list, item) rows into a table with the same primary key. */
export async function bareCopy(pool: pg.Pool, list: string, count: number): Promise<number> {
  await pool.query(
    `CREATE TABLE bare_items (list text COLLATE "C" NOT NULL, item text COLLATE "C" NOT NULL,
       PRIMARY KEY (list, item))`,
  );
  const client = await pool.connect();
  try {
    const t0 = performance.now();
    const stream = client.query(copyFrom('COPY bare_items (list, item) FROM STDIN'));
    async function* text() {
      let buf = '';
      for (const item of items(count)) {
        buf += `${list}\t${item}\n`;
        if (buf.length >= 1 << 20) {
          yield buf;
          buf = '';
        }
      }
      if (buf) yield buf;
    }
    await pipeline(Readable.from(text()), stream);
    const ms = performance.now() - t0;
    return (count / ms) * 1000;
  } finally {
    client.release();
  }
}

/**
 * Runs a lists anchor (`script <mode> <url> <count>`) on this node (>= 22.12), on a fresh database, and
 * returns its rate as an `items_per_s` row of `system`.
 */
export async function runListsAnchor(
  ctx: ScenarioContext,
  anchor: { system: string; script: string; mode: string; database: string; note: string },
  count: number,
): Promise<BenchResult> {
  const url = await ctx.freshDatabase(anchor.database);
  const r = await runAnchor<AnchorResult>(anchor.script, [anchor.mode, url, String(count)]);
  ctx.log(`${anchor.system} ${anchor.mode}: ${Math.round(r.items_per_s)} items/s`);
  return { system: anchor.system, metric: 'items_per_s', value: r.items_per_s, note: anchor.note };
}

/** The rates of each round, rounded, for a result note ("1,234 / 1,310 / 1,190"). */
export function spread(rates: number[]): string {
  return rates.map((x) => Math.round(x).toLocaleString('en-US')).join(' / ');
}

/**
 * pgcoord's rate over the reference's, round by round (the two alternate, so each pair met the
 * same machine), as one `round_ratio` row: the median ratio, with every round's in the note. On a
 * machine whose speed swings within seconds this is steadier than the ratio of the two medians.
 */
export function roundRatio(
  ours: number[],
  reference: number[],
  against: string,
  label = 'pgcoord',
): BenchResult {
  const ratios = ours.map((x, i) => x / reference[i]!);
  return {
    system: `${label} / ${against}`,
    metric: 'round_ratio',
    value: quantile(ratios, 0.5),
    note: `median of ${ratios.length} rounds (${ratios.map((r) => r.toFixed(2)).join(' / ')})`,
  };
}
