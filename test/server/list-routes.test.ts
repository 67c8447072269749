// Attempt lists over JSON (/v1/lists) through the real service on a real database.
import { describe, expect, it } from 'vitest';
import os from 'node:os';
import { AttemptList } from '../../src/index.js';
import { useTestService } from '../support/service.js';
import { waitFor } from '../helpers/wait-for.js';

const service = useTestService();
const { db } = service;

async function api(
  method: string,
  path: string,
  body?: unknown,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- reply bodies are checked by the assertions
): Promise<{ status: number; json: any }> {
  const res = await fetch(`${service.base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** The database server's clock (a Date: ms precision, as the service's JSON has). */
async function serverNow(): Promise<Date> {
  const { rows } = await db.pool.query<{ now: Date }>('SELECT clock_timestamp() AS now');
  return rows[0]!.now;
}

describe('/v1/lists', () => {
  it('inserts, pages, reads, increments, deletes and lists', async () => {
    expect(await api('POST', '/v1/lists/jobs/items', { items: ['a', 'b/c', 'd', 'a'] })).toEqual({
      status: 200,
      json: { inserted: 3 },
    });
    const page = await api('GET', '/v1/lists/jobs/items?count=2');
    expect(page.json).toEqual({
      entries: [
        { item: 'a', attempts: 0 },
        { item: 'b/c', attempts: 0 },
      ],
      last: 'b/c',
    });
    const next = await api(
      'GET',
      `/v1/lists/jobs/items?count=2&after=${encodeURIComponent('b/c')}`,
    );
    expect(next.json.entries.map((e: { item: string }) => e.item)).toEqual(['d']);
    expect(
      (await api('POST', '/v1/lists/jobs/items/increment', { items: ['b/c', 'zz'] })).json,
    ).toEqual({ incremented: 1 });
    expect((await api('GET', '/v1/lists/jobs/items/b/c')).json).toEqual({
      item: 'b/c',
      attempts: 1,
    });
    const missing = await api('GET', '/v1/lists/jobs/items/nope');
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe('PGCOORD_NOT_FOUND');
    expect((await api('GET', '/v1/lists/jobs')).json).toEqual({ list: 'jobs', size: 3 });
    expect((await api('GET', '/v1/lists')).json.lists).toContainEqual({ list: 'jobs', size: 3 });
    expect(
      (await api('POST', '/v1/lists/jobs/items/delete', { items: ['d', 'd', 'x'] })).json,
    ).toEqual({ deleted: 1 });
  });

  it('claims, completes and claims the next batch in one call; refuses stale tokens', async () => {
    const items = Array.from({ length: 25 }, (_, i) => `w${String(i).padStart(2, '0')}`);
    await api('POST', '/v1/lists/work/items', { items });
    const before = await serverNow();
    const first = await api('POST', '/v1/lists/work/claims', { limit: 10, leaseMs: 60_000 });
    expect(first.status).toBe(200);
    expect(first.json.claims).toHaveLength(10);
    expect(first.json.claims[0]).toMatchObject({
      token: expect.stringMatching(/^\d+$/),
      attempts: 0,
    });
    // leaseMs from the server's clock at the claim (ms precision both sides).
    expect(new Date(first.json.claims[0].leaseUntil).getTime()).toBeGreaterThanOrEqual(
      before.getTime() + 60_000,
    );
    const refs = first.json.claims.map((c: { item: string; token: string }) => ({
      item: c.item,
      token: c.token,
    }));
    const second = await api('POST', '/v1/lists/work/claims/complete', {
      claims: refs,
      next: { limit: 10, leaseMs: 60_000 },
    });
    expect(second.json.count).toBe(10);
    expect(second.json.claims).toHaveLength(10);
    const again = await api('POST', '/v1/lists/work/claims/complete', { claims: refs });
    expect(again.json).toMatchObject({
      count: 0,
      stale: refs.map((r: { item: string }) => r.item),
    });
    const failed = await api('POST', '/v1/lists/work/claims/fail', {
      claims: [{ item: second.json.claims[0].item, token: second.json.claims[0].token }],
      maxAttempts: 1,
    });
    expect(failed.json).toMatchObject({ count: 1, dead: [second.json.claims[0].item] });
    expect((await api('GET', '/v1/lists/work/dead')).json.entries).toHaveLength(1);
    expect((await api('POST', '/v1/lists/work/dead/requeue', {})).json).toEqual({ requeued: 1 });
    const ext = await api('POST', '/v1/lists/work/claims/extend', {
      claims: [{ item: second.json.claims[1].item, token: second.json.claims[1].token }],
      leaseMs: 120_000,
    });
    expect(ext.json.count).toBe(1);
    const rel = await api('POST', '/v1/lists/work/claims/release', {
      claims: [{ item: second.json.claims[1].item, token: second.json.claims[1].token }],
    });
    expect(rel.json.count).toBe(1);
  });

  it('inserts with a schedule and priority, batch-wide and per item', async () => {
    const at = new Date(Date.UTC(2031, 0, 2, 3, 4, 5, 6));
    const r = await api('POST', '/v1/lists/sched/items', {
      items: ['a', { item: 'b', priority: 9 }, { item: 'c', runAt: at.toISOString() }],
      delayMs: 3_600_000,
      priority: 2,
    });
    expect(r).toEqual({ status: 200, json: { inserted: 3 } });
    await api('POST', '/v1/lists/sched/items', { items: ['now'], priority: -1 });
    const { rows } = await db.pool.query<{ item: string; priority: number; run_at: Date }>(
      `SELECT item, priority, run_at FROM pgcoord.list_items WHERE list = 'sched' ORDER BY item`,
    );
    const now = await serverNow();
    expect(rows.map((x) => [x.item, x.priority])).toEqual([
      ['a', 2],
      ['b', 9],
      ['c', 2],
      ['now', -1],
    ]);
    expect(rows[0]!.run_at.getTime()).toBeGreaterThan(now.getTime());
    expect(rows[2]!.run_at).toEqual(at);
    const claim = await api('POST', '/v1/lists/sched/claims', { limit: 10, leaseMs: 60_000 });
    expect(claim.json.claims.map((c: { item: string }) => c.item)).toEqual(['now']);
  });

  it('refuses bad input with a 400 naming the field, and writes nothing', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/v1/lists/v/items', { items: 'a' }, 'body.items'],
      ['POST', '/v1/lists/v/items', { items: [1] }, 'body.items[0]'],
      ['POST', '/v1/lists/v/items', {}, 'body.items'],
      ['POST', '/v1/lists/v/items', { items: ['ok', ''] }, 'items[1]'],
      ['POST', '/v1/lists/v/items', { items: ['a\u0000b'] }, 'items[0]'],
      ['POST', '/v1/lists/v/items', { items: ['a'], priority: 40_000 }, 'options.priority'],
      ['POST', '/v1/lists/v/items', { items: ['a'], delayMs: -5 }, 'options.delayMs'],
      ['POST', '/v1/lists/v/items', { items: ['a'], runAt: 'soon' }, 'body.runAt'],
      [
        'POST',
        '/v1/lists/v/items',
        { items: ['a'], runAt: '2030-01-01T00:00:00Z', delayMs: 5 },
        'options.runAt',
      ],
      [
        'POST',
        '/v1/lists/v/items',
        { items: ['a', { item: 'b', priority: 1.5 }] },
        'body.items[1]',
      ],
      [
        'POST',
        '/v1/lists/v/items',
        { items: [{ item: 'b', priority: -40_000 }] },
        'items[0].priority',
      ],
      ['POST', `/v1/lists/${'n'.repeat(300)}/items`, { items: ['a'] }, 'list'],
      ['POST', '/v1/lists/v/claims', { limit: 0, leaseMs: 1000 }, 'body.limit'],
      ['POST', '/v1/lists/v/claims', { limit: 5, leaseMs: -1 }, 'body.leaseMs'],
      ['POST', '/v1/lists/v/claims', { limit: 5 }, 'body.leaseMs'],
      [
        'POST',
        '/v1/lists/v/claims/complete',
        { claims: [{ item: 'a', token: 'x' }] },
        'body.claims[0].token',
      ],
    ];
    for (const [method, path, body, field] of cases) {
      const r = await api(method, path, body);
      expect(r.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(r.json.error.code).toBe('PGCOORD_VALIDATION');
      expect(r.json.error.field).toBe(field);
    }
    const bad = await api('GET', '/v1/lists/v/items?count=abc');
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe('querystring.count');
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgcoord.list_items WHERE list = 'v'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('lists live workers: every list, one list, in the shape the console reads; gone on stop', async () => {
    const list = new AttemptList(db.pool);
    const gate = Promise.withResolvers<void>();
    await list.insertBatch('rendering', ['r1', 'r2']);
    // Refreshed every second, and live for 3 s: room for a loaded machine's delays.
    const busy = list.work('rendering', () => gate.promise, { concurrency: 4, liveTtlMs: 3_000 });
    const idle = list.work('mail', async () => undefined, { concurrency: 1 });
    try {
      const one = await waitFor(async () => {
        const r = await api('GET', '/v1/lists/rendering/workers');
        return r.json.workers[0]?.inFlight === 2 ? r : undefined;
      });
      expect(one.status).toBe(200);
      expect(Object.keys(one.json)).toEqual(['workers']);
      const w = one.json.workers[0];
      expect(w).toEqual({
        id: busy.id,
        list: 'rendering',
        host: os.hostname(),
        pid: process.pid,
        concurrency: 4,
        inFlight: 2,
        startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        heartbeatAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      });
      expect(Date.parse(w.heartbeatAt)).toBeGreaterThanOrEqual(Date.parse(w.startedAt));
      const all = await waitFor(async () => {
        const r = await api('GET', '/v1/workers');
        return r.json.workers.length === 2 ? r.json.workers : undefined;
      });
      expect(all.map((x: { list: string; id: string }) => [x.list, x.id])).toEqual([
        ['mail', idle.id],
        ['rendering', busy.id],
      ]);
      expect((await api('GET', '/v1/lists/nobody/workers')).json).toEqual({ workers: [] });
      const bad = await api('GET', `/v1/lists/${'n'.repeat(300)}/workers`);
      expect(bad.status).toBe(400);
      expect(bad.json.error.field).toBe('list');
      const metrics = await (await fetch(`${service.base}/metrics`)).text();
      expect(metrics).toContain('pgcoord_live_workers{list="rendering"} 1');
      expect(metrics).toContain('pgcoord_live_workers_in_flight{list="rendering"} 2');
      expect(metrics).toContain('pgcoord_live_workers{list="mail"} 1');
      const doc = (await api('GET', '/openapi.json')).json;
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining(['/v1/workers', '/v1/lists/{list}/workers']),
      );
    } finally {
      gate.resolve();
      await Promise.all([busy.stop(), idle.stop()]);
    }
    expect(await api('GET', '/v1/workers')).toEqual({ status: 200, json: { workers: [] } });
  });
});
