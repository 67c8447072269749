// http: the HTTP service under load on loopback, with autocannon: claim + complete in batches of
// 100 (complete-and-claim, one request per batch), rate-limit decisions at 64 connections, and
// SSE fan-out of one notification to many subscribers.
import { spawn } from 'node:child_process';
import path from 'node:path';
import autocannon from 'autocannon';
import { AttemptList } from '../../src/lists/attempt-list.js';
import { createServer, type PgcoordServer } from '../../src/server/index.js';
import {
  packageVersion,
  quantile,
  root,
  type BenchResult,
  type Scenario,
  type ScenarioContext,
} from '../lib.js';

interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  non2xx: number;
  errors: number;
  duration: number;
}

function cannon(options: autocannon.Options): Promise<CannonResult> {
  return new Promise((resolve, reject) => {
    autocannon(options, (err, result) =>
      err ? reject(err) : resolve(result as unknown as CannonResult),
    );
  });
}

async function claimComplete(
  ctx: ScenarioContext,
  base: string,
  lists: AttemptList,
): Promise<BenchResult[]> {
  const total = ctx.quick ? 50_000 : 200_000;
  const connections = 8;
  const list = 'bench-http';
  await lists.insertBatch(
    list,
    Array.from({ length: total }, (_, i) => `item-${String(i).padStart(8, '0')}`),
  );
  let completed = 0;
  let finishedAt = 0;
  const pending: Array<Array<{ item: string; token: string }>> = [];
  const started = performance.now();
  const result = await new Promise<CannonResult>((resolve, reject) => {
    const instance = autocannon(
      {
        url: base,
        connections,
        // Enough requests to finish; stopped as soon as every item is completed.
        amount: Math.ceil(total / 100) * 2 + connections * 4,
        requests: [
          {
            method: 'POST',
            path: `/v1/lists/${list}/claims/complete`,
            headers: { 'content-type': 'application/json' },
            // autocannon resets a connection's context after each pass over `requests`, so claimed
            // batches wait in a shared queue: any connection completes any batch (tokens are per item).
            setupRequest: (req) => {
              const claims = pending.shift() ?? [];
              return {
                ...req,
                body: JSON.stringify({ claims, next: { limit: 100, leaseMs: 60_000 } }),
              };
            },
            onResponse: (status, body) => {
              if (status !== 200) return;
              const r = JSON.parse(body) as {
                count: number;
                claims: Array<{ item: string; token: string }>;
              };
              completed += r.count;
              if (r.claims.length > 0) {
                pending.push(r.claims.map((c) => ({ item: c.item, token: c.token })));
              }
              if (completed >= total && finishedAt === 0) {
                finishedAt = performance.now();
                instance.stop();
              }
            },
          },
        ],
      },
      (err, res) => (err ? reject(err) : resolve(res as unknown as CannonResult)),
    );
  });
  const seconds = ((finishedAt || performance.now()) - started) / 1000;
  ctx.log(
    `claim+complete: ${completed} of ${total} items in ${seconds.toFixed(2)} s (${result.non2xx} non-2xx)`,
  );
  return [
    {
      system: 'pgcoord http',
      metric: 'claim_complete_items_per_s',
      value: completed / seconds,
      note: `${total} items, batches of 100, ${connections} connections, complete-and-claim per request`,
    },
    {
      system: 'pgcoord http',
      metric: 'claim_complete_request_p99_ms',
      value: result.latency.p99,
      note: 'one request completes 100 and claims the next 100',
    },
  ];
}

async function rateLimits(ctx: ScenarioContext, base: string): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  for (const algorithm of ['fixed-window', 'token-bucket']) {
    const body = JSON.stringify({ algorithm, limit: 1_000_000, periodMs: 60_000 });
    const options = (duration: number): autocannon.Options => ({
      url: base,
      connections: 64,
      duration,
      requests: [
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          setupRequest: (req) => ({
            ...req,
            path: `/v1/limits/bench-${algorithm}/key-${Math.floor(Math.random() * 1000)}`,
            body,
          }),
        },
      ],
    });
    // Warm up first (limiter creation, table and index pages), then measure.
    await cannon(options(1));
    const result = await cannon(options(ctx.quick ? 5 : 15));
    ctx.log(
      `limits ${algorithm}: ${Math.round(result.requests.average)}/s, p99 ${result.latency.p99} ms, ${result.non2xx} non-2xx`,
    );
    out.push(
      {
        system: `pgcoord http ${algorithm}`,
        metric: 'limit_decisions_per_s_c64',
        value: result.requests.average,
        note: '64 connections, 1,000 keys',
      },
      {
        system: `pgcoord http ${algorithm}`,
        metric: 'limit_decision_p99_ms_c64',
        value: result.latency.p99,
      },
    );
  }
  return out;
}

async function sseFanOut(ctx: ScenarioContext, base: string): Promise<BenchResult[]> {
  const subscribers = ctx.quick ? 2_000 : 10_000;
  const channel = 'bench-fanout';
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(root, 'bench/fixtures/sse-subscribers.ts'),
      `${base}/v1/channels/${channel}/events`,
      String(subscribers),
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: string[] = [];
  let buf = '';
  const waiters: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) {
      const code = await Promise.race([
        exited,
        new Promise<'line'>((r) => waiters.push(() => r('line'))),
      ]);
      if (code !== 'line' && lines.length === 0) throw new Error(`subscribers exited with ${code}`);
    }
    return lines.shift()!;
  };
  const opening = performance.now();
  const ready = JSON.parse(await nextLine()) as { ready: number };
  ctx.log(
    `sse: ${ready.ready} subscribers ready in ${((performance.now() - opening) / 1000).toFixed(1)} s`,
  );
  const sentAt = Date.now();
  const res = await fetch(`${base}/v1/channels/${channel}/notifications`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ payload: 'fan-out' }),
  });
  const committedAt = Date.now();
  if (res.status !== 202) throw new Error(`notify failed: ${res.status}`);
  const { received } = JSON.parse(await nextLine()) as { received: number[] };
  await exited;
  // Measured from before the notify request left: an upper bound of the time since its commit.
  const delays = received.map((t) => t - sentAt);
  const last = Math.max(...received) - sentAt;
  ctx.log(
    `sse: ${received.length}/${subscribers} received; last ${last} ms after the notify request (${committedAt - sentAt} ms notify round trip)`,
  );
  return [
    {
      system: 'pgcoord http',
      metric: 'sse_subscribers_reached',
      value: received.length,
      note: `of ${subscribers}`,
    },
    {
      system: 'pgcoord http',
      metric: 'sse_last_delivery_ms_after_notify',
      value: last,
      note: `${subscribers} subscribers, one LISTEN connection`,
    },
    {
      system: 'pgcoord http',
      metric: 'sse_p50_delivery_ms_after_notify',
      value: quantile(delays, 0.5),
    },
  ];
}

const scenario: Scenario = {
  name: 'http',
  description:
    'HTTP service on loopback (autocannon): claim+complete batches, rate-limit decisions at 64 connections, SSE fan-out',
  async run(ctx) {
    const pool = ctx.pool({ max: 16 });
    const lists = new AttemptList(pool);
    let server: PgcoordServer | undefined;
    try {
      server = await createServer({ pool, port: 0, logger: false, connection: ctx.url });
      const base = await server.listen();
      const results: BenchResult[] = [];
      results.push(...(await claimComplete(ctx, base, lists)));
      results.push(...(await rateLimits(ctx, base)));
      results.push(...(await sseFanOut(ctx, base)));
      for (const r of results)
        r.note = [
          r.note,
          `fastify ${packageVersion('fastify')}, autocannon ${packageVersion('autocannon')}`,
        ]
          .filter(Boolean)
          .join('; ');
      return results;
    } finally {
      await server?.close();
    }
  },
};

export default scenario;
