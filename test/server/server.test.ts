// The HTTP service through a real listening server on a real database.
import fs from 'node:fs';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createServer,
  REDACT_PATHS,
  resolveServerSettings,
  STATUS_BY_CODE,
  toHttpError,
} from '../../src/server/index.js';
import type { PgcoordServer } from '../../src/server/index.js';
import {
  ConflictError,
  ConnectionError,
  DatabaseError,
  NotFoundError,
  StaleTokenError,
  TimeoutError,
  ValidationError,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { openSse } from '../support/sse.js';

const db = useTestDatabase();
const TOKEN = 'test-token-0123456789abcdef';
let server: PgcoordServer;
let base: string;
let secured: PgcoordServer;
let securedBase: string;

beforeAll(async () => {
  server = await createServer({ pool: db.pool, port: 0, logger: false, bodyLimitBytes: 64 * 1024 });
  base = await server.listen();
  secured = await createServer({ pool: db.pool, port: 0, logger: false, token: TOKEN });
  securedBase = await secured.listen();
});

afterAll(async () => {
  await server?.close();
  await secured?.close();
});

async function json(res: Response): Promise<unknown> {
  return JSON.parse(await res.text());
}

describe('health, metrics and OpenAPI', () => {
  it('answers /healthz and /readyz', async () => {
    const health = await fetch(`${base}/healthz`);
    expect(health.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await json(health)).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('exports Prometheus metrics with request counts, latency and pool usage', async () => {
    await fetch(`${base}/healthz`);
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(
      /pgcoord_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/,
    );
    expect(text).toMatch(
      /pgcoord_http_request_duration_seconds_bucket\{method="GET",route="\/healthz",le="\+Inf"\} \d+/,
    );
    expect(text).toMatch(/pgcoord_pool_connections\{state="total"\} \d+/);
    expect(text).toMatch(/# TYPE pgcoord_pool_connections gauge/);
  });

  it('serves an OpenAPI document generated from every route schema', async () => {
    const doc = (await json(await fetch(`${base}/openapi.json`))) as {
      openapi: string;
      paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }> }>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/healthz',
        '/readyz',
        '/metrics',
        '/v1/channels/{channel}/notifications',
      ]),
    );
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/kv/{path}',
        '/iidy/v1/lists/{list}/{item}',
        '/iidy/v1/batch/lists/{list}',
        '/v1/lists/{list}/items/{item}',
        '/v1/lists/{list}/claims/complete',
        '/v1/limits/{name}/{key}',
        '/v1/leases/{name}/acquire',
        '/v1/changes/{group}/events',
      ]),
    );
    // Every operation is documented from its schema: a summary and at least one reply.
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const o = op as { summary?: string; responses?: Record<string, unknown> };
        expect(o.summary, `${method} ${path}`).toBeTruthy();
        expect(Object.keys(o.responses ?? {}).length, `${method} ${path}`).toBeGreaterThan(0);
      }
    }
    const item = doc.paths['/iidy/v1/lists/{list}/{item}']!.get!;
    expect(item.parameters?.map((p) => p.name)).toEqual(['list', 'item']);
    const post = doc.paths['/v1/channels/{channel}/notifications']!.post!;
    expect(post.parameters).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'channel', in: 'path' })]),
    );
  });

  it('replies 404 JSON for an unknown route', async () => {
    const res = await fetch(`${base}/nope`);
    expect(res.status).toBe(404);
    expect(await json(res)).toMatchObject({ error: { code: 'PGCOORD_NO_ROUTE' } });
  });
});

describe('security', () => {
  it('refuses to bind a non-loopback address without a token', () => {
    expect(() => resolveServerSettings({ host: '0.0.0.0' }, {})).toThrow(ValidationError);
    expect(() => resolveServerSettings({ host: '0.0.0.0', token: 'short' }, {})).toThrow(
      /at least 16/,
    );
    expect(resolveServerSettings({ host: '0.0.0.0' }, { PGCOORD_TOKEN: TOKEN }).token).toBe(TOKEN);
    expect(resolveServerSettings({}, {}).host).toBe('127.0.0.1');
    expect(resolveServerSettings({ host: '::1' }, {}).token).toBeUndefined();
  });

  it('demands the bearer token on every route but the health checks', async () => {
    expect((await fetch(`${securedBase}/healthz`)).status).toBe(200);
    expect((await fetch(`${securedBase}/readyz`)).status).toBe(200);
    const none = await fetch(`${securedBase}/metrics`);
    expect(none.status).toBe(401);
    expect(await json(none)).toMatchObject({ error: { code: 'PGCOORD_UNAUTHORIZED' } });
    const wrong = await fetch(`${securedBase}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}x` },
    });
    expect(wrong.status).toBe(401);
    const prefix = await fetch(`${securedBase}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN.slice(0, 10)}` },
    });
    expect(prefix.status).toBe(401);
    const ok = await fetch(`${securedBase}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(ok.status).toBe(200);
    const doc = (await json(
      await fetch(`${securedBase}/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } }),
    )) as { components: unknown };
    expect(doc.components).toEqual({
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    });
  });

  it('limits the body size and rejects malformed JSON with a 4xx, never a stack trace', async () => {
    const big = await fetch(`${base}/v1/channels/c/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ payload: 'x'.repeat(100 * 1024) }),
    });
    expect(big.status).toBe(413);
    const bad = await fetch(`${base}/v1/channels/c/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"payload": ',
    });
    expect(bad.status).toBe(400);
    const text = await bad.text();
    expect(text).not.toMatch(/at .*\.(js|ts):\d+/);
  });

  it('refuses a payload that parses to Infinity (1e999) instead of sending null', async () => {
    const res = await fetch(`${base}/v1/channels/c/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"payload": {"n": 1e999}}',
    });
    expect(res.status).toBe(400);
    const body = (await json(res)) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('PGCOORD_VALIDATION');
    expect(body.error.message).toMatch(/^payload: /);
  });
});

describe('logs', () => {
  it('redact the token, the authorization header and passwords', async () => {
    let text = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        text += chunk.toString();
        done();
      },
    });
    const logger = pino({ redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, sink);
    logger.info(
      { token: TOKEN, req: { headers: { authorization: `Bearer ${TOKEN}` } } },
      'request',
    );
    logger.info(
      { settings: { password: 's3cret-pw', connectionString: 'postgres://u:s3cret-pw@h/db' } },
      'x',
    );
    // A server with a token logs its failures without it.
    const logged = await createServer({ pool: db.pool, port: 0, logger, token: TOKEN });
    try {
      await logged.app.inject({
        method: 'GET',
        url: '/metrics',
        headers: { authorization: 'Bearer wrong-token-123456' },
      });
    } finally {
      await logged.close();
    }
    expect(text).toContain('[redacted]');
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('s3cret-pw');
  });
});

describe('error mapping', () => {
  it('maps every pgcoord code to one status in one table', () => {
    expect(toHttpError(new ValidationError('items[2]', 'bad')).status).toBe(400);
    expect(toHttpError(new ValidationError('items[2]', 'bad')).body.error.field).toBe('items[2]');
    expect(toHttpError(new NotFoundError('x')).status).toBe(404);
    expect(toHttpError(new ConflictError('x')).status).toBe(409);
    expect(toHttpError(new StaleTokenError('x')).status).toBe(409);
    expect(toHttpError(new ConnectionError('x')).status).toBe(503);
    expect(toHttpError(new TimeoutError('x')).status).toBe(504);
    expect(toHttpError(new DatabaseError('x', { sqlState: '42P01' })).body.error.sqlState).toBe(
      '42P01',
    );
    expect(toHttpError(new Error('secret internals')).body.error.message).not.toMatch(/secret/);
    expect(Object.keys(STATUS_BY_CODE)).toHaveLength(20);
    expect(STATUS_BY_CODE.PGCOORD_READ_ONLY).toBe(403);
  });
});

describe('notify and Server-Sent Events', () => {
  it('streams the notifications of a channel to every subscriber', async () => {
    const a = await openSse(`${base}/v1/channels/${encodeURIComponent('Mixed Case')}/events`);
    const b = await openSse(`${base}/v1/channels/${encodeURIComponent('Mixed Case')}/events`);
    try {
      expect(a.status).toBe(200);
      await a.next((e) => e.event === 'ready');
      await b.next((e) => e.event === 'ready');
      const res = await fetch(
        `${base}/v1/channels/${encodeURIComponent('Mixed Case')}/notifications`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ payload: 'line one\nline two' }),
        },
      );
      expect(res.status).toBe(202);
      await fetch(`${base}/v1/channels/${encodeURIComponent('Mixed Case')}/notifications`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ payload: { id: 7 } }),
      });
      expect((await a.next((e) => e.event === 'notification')).data).toBe('line one\nline two');
      expect((await b.next((e) => e.event === 'notification')).data).toBe('line one\nline two');
      expect((await a.next((e) => e.event === 'notification')).data).toBe('{"id":7}');
    } finally {
      a.close();
      b.close();
    }
  });

  it('refuses bad channels and bodies with a 400 naming the field', async () => {
    const long = await fetch(`${base}/v1/channels/${'x'.repeat(64)}/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(long.status).toBe(400);
    expect(await json(long)).toMatchObject({
      error: { code: 'PGCOORD_VALIDATION', field: 'params.channel' },
    });
    const extra = await fetch(`${base}/v1/channels/c/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"payload":"x","other":1}',
    });
    expect(extra.status).toBe(400);
    expect(await json(extra)).toMatchObject({ error: { field: 'body.other' } });
  });
});

describe('requests the routes cannot take', () => {
  it('answers a known path with an unsupported method 405 and an Allow header, in every route family', async () => {
    for (const [method, path, allow] of [
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/metrics', 'GET, HEAD'],
      ['POST', '/openapi.json', 'GET, HEAD'],
      ['PUT', '/v1/lists', 'GET, HEAD'],
      ['PUT', '/v1/lists/x', 'GET, HEAD'],
      ['PATCH', '/v1/lists/x/items', 'GET, HEAD, POST'],
      ['DELETE', '/v1/lists/x/claims', 'POST'],
      ['PATCH', '/v1/kv/some/key', 'DELETE, GET, HEAD, PUT'],
      ['GET', '/v1/limits/n/k', 'POST'],
      ['PUT', '/v1/leases/l/acquire', 'POST'],
      ['DELETE', '/v1/leases/l', 'GET, HEAD'],
      ['GET', '/v1/channels/c/notifications', 'POST'],
      ['POST', '/v1/channels/c/events', 'GET, HEAD'],
      ['POST', '/v1/changes/groups', 'GET, HEAD'],
      ['POST', '/v1/changes/g/events', 'GET, HEAD'],
      ['GET', '/v1/changes/groups/g', 'DELETE, PUT'],
    ] as const) {
      const res = await fetch(`${base}${path}`, { method });
      const what = `${method} ${path}`;
      expect({ what, status: res.status, allow: res.headers.get('allow') }).toEqual({
        what,
        status: 405,
        allow,
      });
      expect(await json(res), what).toMatchObject({
        error: { code: 'PGCOORD_METHOD_NOT_ALLOWED' },
      });
    }
    // iidy's paths: its own error form, text or JSON by Content-Type.
    const put = await fetch(`${base}/iidy/v1/lists/l/a/b`, { method: 'PUT' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('DELETE, GET, HEAD, POST');
    expect(await put.text()).toMatch(/^PUT is not allowed/);
    const patch = await fetch(`${base}/iidy/v1/batch/lists/l`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(patch.status).toBe(405);
    expect(patch.headers.get('allow')).toBe('DELETE, GET, HEAD, POST');
    expect(await json(patch)).toMatchObject({ code: 'PGCOORD_METHOD_NOT_ALLOWED' });
    // An unknown path stays a 404.
    expect((await fetch(`${base}/v1/nothing/here`, { method: 'PUT' })).status).toBe(404);
  });

  it('answers a bad percent-escape in the path with the usual error body', async () => {
    for (const path of ['/v1/lists/%ZZ', '/v1/lists/%FF/items', '/v1/kv/%E9', '/nope/%ZZ']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(400);
      expect(res.headers.get('content-type'), path).toMatch(/^application\/json/);
      const body = (await json(res)) as { error: { code: string; message: string } };
      expect(body.error, path).toMatchObject({ code: 'PGCOORD_BAD_REQUEST' });
      expect(body.error.message, path).toMatch(/percent/);
      expect(Object.keys(body), path).toEqual(['error']);
    }
    const long = await fetch(`${base}/v1/lists/${'x'.repeat(9000)}`);
    expect(long.status).toBe(414);
    expect(await json(long)).toMatchObject({ error: { code: 'PGCOORD_URI_TOO_LONG' } });
    const text = await fetch(`${base}/iidy/v1/lists/l/%FF`);
    expect(text.status).toBe(400);
    expect(await text.text()).toMatch(/percent/);
    const iidyJson = await fetch(`${base}/iidy/v1/lists/l/%ZZ`, {
      headers: { 'content-type': 'application/json' },
    });
    expect(iidyJson.status).toBe(400);
    expect(await json(iidyJson)).toMatchObject({ code: 'PGCOORD_BAD_REQUEST' });
  });

  it('lists every error code the service answers in the table of docs/cli-and-service.md', async () => {
    const page = fs.readFileSync(new URL('../../docs/cli-and-service.md', import.meta.url), 'utf8');
    const table = page.slice(page.indexOf('## Error replies'), page.indexOf('## As a library'));
    expect(table.length).toBeGreaterThan(0);
    const codes = new Set<string>(Object.keys(STATUS_BY_CODE));
    const dir = new URL('../../src/server/', import.meta.url);
    // server-options.ts names environment variables (PGCOORD_PORT ...), not error codes.
    for (const file of fs.readdirSync(dir).filter((f) => f !== 'server-options.ts')) {
      const source = fs.readFileSync(new URL(file, dir), 'utf8');
      for (const m of source.matchAll(/'(PGCOORD_[A-Z_]+)'/g)) codes.add(m[1]!);
    }
    expect(codes.has('PGCOORD_BAD_REQUEST')).toBe(true);
    for (const code of codes) expect(table, code).toContain(`\`${code}\``);
  });
});

describe('Server-Sent Events on invalid names', () => {
  /** Status and body of a GET that may turn into a stream (which is then cut). */
  async function statusOf(url: string): Promise<{ status: number; body: unknown }> {
    const controller = new AbortController();
    const res = await fetch(url, { signal: controller.signal });
    if (res.headers.get('content-type')?.startsWith('text/event-stream')) {
      controller.abort();
      return { status: res.status, body: 'stream' };
    }
    return { status: res.status, body: await json(res) };
  }

  it('refuses an invalid channel with a 400 before the stream starts', async () => {
    for (const channel of ['a\u0000b', '日'.repeat(22), 'x'.repeat(64)]) {
      const r = await statusOf(`${base}/v1/channels/${encodeURIComponent(channel)}/events`);
      expect(r, JSON.stringify(channel)).toMatchObject({
        status: 400,
        body: { error: { code: 'PGCOORD_VALIDATION', field: 'params.channel' } },
      });
    }
    const post = await fetch(
      `${base}/v1/channels/${encodeURIComponent('日'.repeat(22))}/notifications`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      },
    );
    expect(await json(post)).toMatchObject({ error: { field: 'params.channel' } });
    // The limit itself still streams.
    expect(
      await statusOf(`${base}/v1/channels/${encodeURIComponent('日'.repeat(21))}/events`),
    ).toEqual({
      status: 200,
      body: 'stream',
    });
  });

  it('refuses an invalid consumer group with a 400 before the stream starts', async () => {
    for (const group of ['a\u0000b', '日'.repeat(67)]) {
      const r = await statusOf(`${base}/v1/changes/${encodeURIComponent(group)}/events`);
      expect(r, JSON.stringify(group)).toMatchObject({
        status: 400,
        body: { error: { code: 'PGCOORD_VALIDATION', field: 'params.group' } },
      });
    }
  });
});
