// Changes of a consumer group as Server-Sent Events, with Last-Event-ID resume.
import { describe, expect, it } from 'vitest';
import { ChangeCapture } from '../../src/index.js';
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
    const s = await fetch(`${service.base}/v1/changes/web/events?startFrom=yesterday`);
    expect(s.status).toBe(400);
  });
});
