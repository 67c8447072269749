// Key-value (ETag / If-Match CAS), rate limits and leases over HTTP, real service, real database.
import { describe, expect, it } from 'vitest';
import { useTestService } from '../support/service.js';

const service = useTestService();

async function api(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${service.base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : {}, headers: res.headers };
}

describe('/v1/kv', () => {
  it('reads and writes with ETags; If-Match is a compare-and-set (412 on mismatch)', async () => {
    expect((await api('GET', '/v1/kv/cfg/a')).status).toBe(404);
    expect(
      (await api('PUT', '/v1/kv/cfg/a', { value: 'v1' }, { 'if-none-match': '*' })).status,
    ).toBe(200);
    expect(
      (await api('PUT', '/v1/kv/cfg/a', { value: 'again' }, { 'if-none-match': '*' })).status,
    ).toBe(412);
    const got = await api('GET', '/v1/kv/cfg/a');
    expect(got.json).toEqual({ key: 'cfg/a', value: 'v1' });
    const etag = got.headers.get('etag')!;
    expect(etag).toMatch(/^".+"$/);
    expect((await api('PUT', '/v1/kv/cfg/a', { value: 'v2' }, { 'if-match': etag })).status).toBe(
      200,
    );
    // The old tag no longer matches: nothing is written.
    const lost = await api('PUT', '/v1/kv/cfg/a', { value: 'v3' }, { 'if-match': etag });
    expect(lost.status).toBe(412);
    expect(lost.json).toMatchObject({ error: { code: 'PGCOORD_PRECONDITION_FAILED' } });
    expect((await api('GET', '/v1/kv/cfg/a')).json.value).toBe('v2');
    expect((await api('DELETE', '/v1/kv/cfg/a')).json).toEqual({ deleted: true });
    expect((await api('DELETE', '/v1/kv/cfg/a')).json).toEqual({ deleted: false });
  });

  it('lets exactly one of many concurrent If-Match writers win', async () => {
    await api('PUT', '/v1/kv/race', { value: '0' });
    const etag = (await api('GET', '/v1/kv/race')).headers.get('etag')!;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        api('PUT', '/v1/kv/race', { value: `w${i}` }, { 'if-match': etag }),
      ),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 412)).toHaveLength(9);
  });

  it('refuses bad input with a 400 naming the field', async () => {
    expect((await api('PUT', '/v1/kv/k', { value: 5 })).json).toMatchObject({
      error: { field: 'body.value' },
    });
    expect((await api('PUT', '/v1/kv/k', { value: 'x', ttlMs: 0 })).json).toMatchObject({
      error: { field: 'body.ttlMs' },
    });
    expect((await api('PUT', '/v1/kv/k', { value: 'a\u0000b' })).status).toBe(400);
    expect((await api('GET', '/v1/kv/k')).status).toBe(404);
  });
});

describe('/v1/limits', () => {
  it('allows exactly the limit under concurrency, then denies with Retry-After', async () => {
    const body = { algorithm: 'fixed-window', limit: 5, periodMs: 60_000 };
    const results = await Promise.all(
      Array.from({ length: 12 }, () => api('POST', '/v1/limits/api/user-1', body)),
    );
    expect(results.filter((r) => r.json.allowed === true)).toHaveLength(5);
    const denied = results.find((r) => r.json.allowed === false)!;
    expect(denied.status).toBe(200);
    expect(Number(denied.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await api('POST', '/v1/limits/api/user-2', body)).json.allowed).toBe(true);
  });

  it('refuses bad settings with a 400', async () => {
    expect(
      (await api('POST', '/v1/limits/api/k', { algorithm: 'nope', limit: 1, periodMs: 1 })).json,
    ).toMatchObject({
      error: { field: 'body.algorithm' },
    });
    expect((await api('POST', '/v1/limits/api/k', { limit: 0, periodMs: 1000 })).status).toBe(400);
    expect(
      (await api('POST', '/v1/limits/api/k', { limit: 2, periodMs: 1000, cost: 3 })).status,
    ).toBe(400);
  });
});

describe('/v1/leases', () => {
  it('lists the leases held now, by name, with the time each has left', async () => {
    const x = await api('POST', '/v1/leases/list-b/acquire', { owner: 'x', ttlMs: 60_000 });
    await api('POST', '/v1/leases/list-a/acquire', { owner: 'y', ttlMs: 120_000 });
    await api('POST', '/v1/leases/list-c/acquire', { owner: 'z', ttlMs: 60_000 });
    await api('POST', '/v1/leases/list-c/release', {
      token: (await api('GET', '/v1/leases/list-c')).json.token,
    });
    const listed = (await api('GET', '/v1/leases')).json.leases as Array<{
      name: string;
      owner: string;
      token: string;
      remainingMs: number;
    }>;
    const mine = listed.filter((l) => l.name.startsWith('list-'));
    expect(mine.map((l) => [l.name, l.owner])).toEqual([
      ['list-a', 'y'],
      ['list-b', 'x'],
    ]);
    expect(mine[1]!.token).toBe(x.json.token);
    expect(mine[0]!.remainingMs).toBeGreaterThan(60_000);
    expect(mine[0]!.remainingMs).toBeLessThanOrEqual(120_000);
  });

  it('acquires with fencing tokens, refuses a second holder and a stale token', async () => {
    const a = await api('POST', '/v1/leases/leader/acquire', { owner: 'a', ttlMs: 60_000 });
    expect(a.status).toBe(200);
    expect(a.json).toMatchObject({
      name: 'leader',
      owner: 'a',
      token: expect.stringMatching(/^\d+$/),
    });
    expect((await api('POST', '/v1/leases/leader/acquire', { owner: 'b' })).status).toBe(409);
    expect((await api('GET', '/v1/leases/leader')).json).toMatchObject({
      owner: 'a',
      token: a.json.token,
    });
    expect(
      (await api('POST', '/v1/leases/leader/renew', { token: a.json.token, ttlMs: 30_000 })).status,
    ).toBe(200);
    expect((await api('POST', '/v1/leases/leader/release', { token: a.json.token })).json).toEqual({
      released: true,
    });
    const stale = await api('POST', '/v1/leases/leader/renew', { token: a.json.token });
    expect(stale.status).toBe(409);
    expect(stale.json).toMatchObject({ error: { code: 'PGCOORD_STALE_TOKEN' } });
    const b = await api('POST', '/v1/leases/leader/acquire', { owner: 'b' });
    expect(BigInt(b.json.token as string)).toBeGreaterThan(BigInt(a.json.token as string));
    expect((await api('GET', '/v1/leases/free-one')).status).toBe(404);
  });

  it('renew and release act on name and token: the reply carries the stored owner, never the given one', async () => {
    const a = await api('POST', '/v1/leases/echo/acquire', { owner: 'a', ttlMs: 60_000 });
    const renewed = await api('POST', '/v1/leases/echo/renew', {
      token: a.json.token,
      owner: 'mallory',
    });
    expect(renewed.status).toBe(200);
    expect(renewed.json).toMatchObject({ owner: 'a', token: a.json.token });
    expect((await api('GET', '/v1/leases/echo')).json).toMatchObject({ owner: 'a' });
    // An owner acquire would refuse is refused here too, and nothing changes.
    for (const op of ['renew', 'release']) {
      const big = await api('POST', `/v1/leases/echo/${op}`, {
        token: a.json.token,
        owner: 'm'.repeat(100_000),
      });
      expect(big.status).toBe(400);
      expect(big.json).toMatchObject({ error: { code: 'PGCOORD_VALIDATION' } });
    }
    expect((await api('GET', '/v1/leases/echo')).json).toMatchObject({ owner: 'a' });
    const released = await api('POST', '/v1/leases/echo/release', { token: a.json.token });
    expect(released.json).toEqual({ released: true });
  });
});
