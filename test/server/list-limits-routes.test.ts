// Keys and limits over JSON: /v1/lists/:list/limits, keyed inserts, claims that tighten limits.
import { describe, expect, it } from 'vitest';
import { useTestService } from '../support/service.js';

const service = useTestService();

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

describe('/v1/lists/:list/limits', () => {
  it('stores limits, inserts keyed items, claims within them and says when to come back', async () => {
    const put = await api('PUT', '/v1/lists/hosts/limits', {
      perKey: { concurrency: 1, rate: { limit: 1, periodMs: 60_000 } },
    });
    expect(put).toEqual({
      status: 200,
      json: {
        perKey: {
          concurrency: 1,
          rate: { limit: 1, periodMs: 60_000, algorithm: 'gcra', burst: 1 },
        },
      },
    });
    expect((await api('GET', '/v1/lists/hosts/limits')).json).toEqual(put.json);
    expect(
      (
        await api('POST', '/v1/lists/hosts/items', {
          items: [
            { item: 'a1', key: 'a' },
            { item: 'a2', key: 'a' },
            { item: 'b1', key: 'b' },
            'none',
          ],
        })
      ).json,
    ).toEqual({ inserted: 4 });
    const first = await api('POST', '/v1/lists/hosts/claims', { limit: 10, leaseMs: 60_000 });
    expect(first.status).toBe(200);
    expect(first.json.claims.map((c: { item: string }) => c.item).sort()).toEqual([
      'a1',
      'b1',
      'none',
    ]);
    expect(first.json.nextSlotMs).toBeGreaterThan(50_000);
    const done = await api('POST', '/v1/lists/hosts/claims/complete', {
      claims: first.json.claims.map((c: { item: string; token: string }) => ({
        item: c.item,
        token: c.token,
      })),
      next: { limit: 10, leaseMs: 60_000 },
    });
    // a's slot is free, but its rate allows one claim a minute.
    expect(done.json.count).toBe(3);
    expect(done.json.claims).toEqual([]);
    expect(done.json.nextSlotMs).toBeGreaterThan(50_000);
    expect((await api('PUT', '/v1/lists/hosts/limits', {})).json).toEqual({});
  });

  it('refuses bad limits and keys with a 400 naming the field', async () => {
    for (const body of [
      { concurrency: 0 },
      { perKey: { concurrency: 1.5 } },
      { perKey: { rate: { limit: 0, periodMs: 1000 } } },
      { keyRegex: '(' },
      { nope: 1 },
    ]) {
      const r = await api('PUT', '/v1/lists/bad/limits', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
    const key = await api('POST', '/v1/lists/bad/items', { items: [{ item: 'i', key: '' }] });
    expect(key.status).toBe(400);
    expect(key.json.error.message ?? JSON.stringify(key.json)).toMatch(/key/);
    const tight = await api('POST', '/v1/lists/bad/claims', {
      limit: 1,
      leaseMs: 1000,
      perKeyConcurrency: 0,
    });
    expect(tight.status).toBe(400);
  });
});
