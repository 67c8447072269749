// Changes of a consumer group as Server-Sent Events, with Last-Event-ID resume.
import { describe, expect, it } from 'vitest';
import { ChangeCapture, ChangeConsumer } from '../../src/index.js';
import { waitFor } from '../helpers/wait-for.js';
import { useTestService } from '../support/service.js';
import { openSse } from '../support/sse.js';

const service = useTestService({
  setup: async (db) => {
    await db.pool.query('CREATE TABLE orders (id int PRIMARY KEY, note text)');
    await new ChangeCapture(db.pool).track('orders');
  },
});
const { db } = service;

describe('GET /v1/changes/:group/events', () => {
  it('streams the changes of a group and resumes after Last-Event-ID', async () => {
    expect((await put('web')).status).toBe(201);
    const first = await openSse(`${service.base}/v1/changes/web/events`);
    await first.next((e) => e.event === 'ready', 20_000);
    await db.pool.query(`INSERT INTO orders VALUES (1, 'a'), (2, 'b')`);
    const c1 = await first.next((e) => e.event === 'change', 20_000);
    const c2 = await first.next((e) => e.event === 'change', 20_000);
    expect(JSON.parse(c1.data)).toMatchObject({ table: 'orders', op: 'INSERT', pk: { id: 1 } });
    expect(JSON.parse(c2.data)).toMatchObject({ pk: { id: 2 } });
    expect(BigInt(c2.id!)).toBeGreaterThan(BigInt(c1.id!));
    first.close();

    // Written while nobody listens: the group keeps them for the next consumer.
    await db.pool.query(`UPDATE orders SET note = 'z' WHERE id = 1`);
    const second = await openSse(`${service.base}/v1/changes/web/events`, {
      'last-event-id': c2.id!,
    });
    try {
      const c3 = await second.next((e) => e.event === 'change', 30_000);
      expect(JSON.parse(c3.data)).toMatchObject({
        op: 'UPDATE',
        pk: { id: 1 },
        new: { note: 'z' },
      });
      expect(BigInt(c3.id!)).toBeGreaterThan(BigInt(c2.id!));
    } finally {
      second.close();
    }
    const groups = (await (await fetch(`${service.base}/v1/changes/groups`)).json()) as {
      groups: Array<{ group: string }>;
    };
    expect(groups.groups.map((g) => g.group)).toContain('web');
  });

  it('refuses a bad Last-Event-ID or startFrom with a 400', async () => {
    const r = await fetch(`${service.base}/v1/changes/web/events`, {
      headers: { 'last-event-id': 'abc' },
    });
    expect(r.status).toBe(400);
    const s = await put('web2', { startFrom: 'yesterday' });
    expect(s.status).toBe(400);
    expect(await s.json()).toMatchObject({ error: { field: 'body.startFrom' } });
  });
});

describe('consumer groups over HTTP', () => {
  it('streams only a group created first: an unknown name is a 404 that creates nothing', async () => {
    const r = await fetch(`${service.base}/v1/changes/typo/events`);
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ error: { code: 'PGCOORD_NOT_FOUND' } });
    expect(await groupNames()).not.toContain('typo');
    // A group may be called "groups": its stream is not taken for a route under /groups/.
    expect((await put('groups')).status).toBe(201);
    const named = await openSse(`${service.base}/v1/changes/groups/events`);
    try {
      expect(named.status).toBe(200);
      await named.next((e) => e.event === 'ready', 20_000);
    } finally {
      named.close();
    }
  });

  it('refuses to stream a parallel group (the stream is an ordered consumer)', async () => {
    await new ChangeCapture(db.pool).createGroup('lanes', { mode: 'parallel', partitions: 2 });
    const r = await fetch(`${service.base}/v1/changes/lanes/events`);
    expect(r.status).toBe(409);
    expect(await r.json()).toMatchObject({ error: { code: 'PGCOORD_CONFLICT' } });
    expect((await put('lanes')).status).toBe(409);
  });

  it('creates a group with PUT (201, then 200), shows it, and drops it with DELETE', async () => {
    await db.pool.query(`INSERT INTO orders VALUES (10, 'before')`);
    const created = await put('audit', { startFrom: 'beginning' });
    expect(created.status).toBe(201);
    expect(await created.json()).toEqual({ group: 'audit', created: true });
    const again = await put('audit');
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ group: 'audit', created: false });
    expect(await groupNames()).toContain('audit');
    // startFrom: 'beginning' keeps what was written before the group existed.
    const stream = await openSse(`${service.base}/v1/changes/audit/events`);
    try {
      // The first change streamed is the oldest retained, written before the group existed.
      const first = await stream.next((e) => e.event === 'change', 20_000);
      const inserted = await db.pool.query<{ id: string }>(
        `SELECT min(id)::text AS id FROM pgcoord.changes`,
      );
      expect(first.id).toBe(inserted.rows[0]!.id);
      await stream.next(
        (e) => e.event === 'change' && (JSON.parse(e.data) as { pk: { id: number } }).pk.id === 10,
        20_000,
      );
      // Dropping the group ends its open streams.
      const del = await fetch(`${service.base}/v1/changes/groups/audit`, { method: 'DELETE' });
      expect(del.status).toBe(200);
      expect(await del.json()).toEqual({ deleted: true });
      await stream.ended;
    } finally {
      stream.close();
    }
    expect(await groupNames()).not.toContain('audit');
    const gone = await fetch(`${service.base}/v1/changes/groups/audit`, { method: 'DELETE' });
    expect(await gone.json()).toEqual({ deleted: false });
    expect((await fetch(`${service.base}/v1/changes/audit/events`)).status).toBe(404);
  });
});

function put(group: string, body?: unknown): Promise<Response> {
  return fetch(`${service.base}/v1/changes/groups/${encodeURIComponent(group)}`, {
    method: 'PUT',
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
}

async function groupNames(): Promise<string[]> {
  const res = await fetch(`${service.base}/v1/changes/groups`);
  const body = (await res.json()) as { groups: Array<{ group: string }> };
  return body.groups.map((g) => g.group);
}

describe('dead letters over HTTP', () => {
  it('lists a group’s dead letters and replays them', async () => {
    await new ChangeCapture(db.pool).createGroup('poisoned');
    let poison = true;
    const delivered: number[] = [];
    const consumer = new ChangeConsumer(db.pool, {
      group: 'poisoned',
      maxAttempts: 1,
      retryBaseMs: 5,
      retryMaxMs: 10,
      handler: async (changes) => {
        for (const c of changes) {
          const id = (c.new as { id: number }).id;
          if (poison && id === 902) throw new Error('poison 902');
          delivered.push(id);
        }
      },
    });
    await consumer.start();
    try {
      await db.pool.query(`INSERT INTO orders SELECT g, 'x' FROM generate_series(901, 903) g`);
      const dead = await waitFor(async () => {
        const res = await fetch(`${service.base}/v1/changes/groups/poisoned/dead`);
        const body = (await res.json()) as {
          deadLetters: Array<{ changeId: string; lastError: string; state: string }>;
        };
        return body.deadLetters.length === 1 ? body.deadLetters : null;
      });
      expect(dead[0]).toMatchObject({ lastError: 'poison 902', state: 'dead' });
      poison = false;
      const bad = await fetch(`${service.base}/v1/changes/groups/poisoned/dead/replay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ changeIds: ['x'] }),
      });
      expect(bad.status).toBe(400);
      const replay = await fetch(`${service.base}/v1/changes/groups/poisoned/dead/replay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ changeIds: [dead[0]!.changeId] }),
      });
      expect(await replay.json()).toEqual({ replayed: 1 });
      await waitFor(() => delivered.includes(902));
      await waitFor(async () => {
        const res = await fetch(`${service.base}/v1/changes/groups/poisoned/dead`);
        return ((await res.json()) as { deadLetters: unknown[] }).deadLetters.length === 0;
      });
    } finally {
      await consumer.stop();
    }
  });
});
