// Property tests through the real service: any valid item round-trips through the iidy and JSON
// routes (slashes, spaces, Unicode included); any invalid one is a 4xx that writes nothing.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { useTestService } from '../support/service.js';

const service = useTestService();

const validItem = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 60 })
  .filter((s) => !s.includes('\u0000') && s.isWellFormed() && Buffer.byteLength(s) <= 2048);

describe('HTTP fuzz', () => {
  it('round-trips any valid item through the iidy single-item routes', async () => {
    await fc.assert(
      // "." and ".." cannot travel as a path segment: URL parsers (fetch included) resolve them,
      // even percent-encoded, before the request leaves. docs/cli-and-service.md sends them to the batch routes.
      fc.asyncProperty(
        validItem.filter((i) => i !== '.' && i !== '..'),
        async (item) => {
          const path = `/iidy/v1/lists/fuzz/${encodeURIComponent(item)}`;
          const json = { 'content-type': 'application/json' };
          const add = await fetch(`${service.base}${path}`, { method: 'POST', headers: json });
          expect(add.status).toBe(201);
          const got = await fetch(`${service.base}${path}`, { headers: json });
          expect(await got.json()).toEqual({ item, attempts: 0 });
          const del = await fetch(`${service.base}${path}`, { method: 'DELETE', headers: json });
          expect(await del.json()).toEqual({ deleted: 1 });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses a body with a __proto__ key (prototype poisoning), naming the body, writing nothing', async () => {
    for (const body of [
      '{"items":["a"],"__proto__":{"polluted":true}}',
      '{"items":{"__proto__":null}}', // found by the property below
      '{"items":["a"],"\\u005f_proto__":{}}', // the same key, escaped
      '{"items":["a"],"constructor":{"prototype":{"polluted":true}}}',
    ]) {
      const res = await fetch(`${service.base}/v1/lists/fuzz-proto/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      expect(res.status, body).toBe(400);
      const err = (await res.json()) as { error: { code: string; message: string } };
      expect(err.error, body).toMatchObject({ code: 'PGCOORD_VALIDATION', field: 'body' });
      expect(err.error.message, body).toMatch(/prototype poisoning/);
    }
    const size = await fetch(`${service.base}/v1/lists/fuzz-proto`);
    expect(await size.json()).toEqual({ list: 'fuzz-proto', size: 0 });
  });

  it('answers an empty or malformed JSON body with a 400 that says so', async () => {
    const post = (body: string) =>
      fetch(`${service.base}/v1/lists/fuzz-empty/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
    const empty = await post('');
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: { code: string } }).error.code).toBe(
      'PGCOORD_BAD_REQUEST',
    );
    const bad = await post('{"items": [');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: unknown }).error).toMatchObject({
      code: 'PGCOORD_VALIDATION',
      field: 'body',
    });
  });

  it('answers any JSON body on the list routes with 200 or a 400 naming a field, never a 5xx', async () => {
    const anyJson = fc.jsonValue({ maxDepth: 3 });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('items', 'items/increment', 'items/delete', 'claims', 'claims/complete'),
        fc.oneof(
          anyJson,
          fc.record({ items: fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(''))) }),
        ),
        async (route, body) => {
          const res = await fetch(`${service.base}/v1/lists/fuzz-bad/${route}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          expect(
            res.status === 200 || res.status === 400,
            `${route} ${JSON.stringify(body)} -> ${res.status}`,
          ).toBe(true);
          if (res.status === 400) {
            const err = (await res.json()) as {
              error: { code: string; field?: string; message: string };
            };
            const text = JSON.stringify(body);
            expect(err.error.code, text).toBe('PGCOORD_VALIDATION');
            expect(err.error.field, text).toBeTruthy();
          } else {
            await res.text();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('HTTP fuzz of methods, paths and bodies', () => {
  const segment = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 12 }).map(encodeURIComponent),
    fc.constantFrom('%ZZ', '%FF', '%', '%E9', '%00', '%0A', '%2F', '..', '', 'groups', 'events'),
  );
  const paths = fc
    .tuple(
      fc.constantFrom(
        '/v1/lists/$/items/$',
        '/v1/lists/$/claims',
        '/v1/kv/$',
        '/v1/limits/$/$',
        '/v1/leases/$/acquire',
        '/v1/channels/$/notifications',
        '/v1/changes/groups/$',
        '/iidy/v1/lists/$/$',
        '/iidy/v1/increment/lists/$/$',
        '/iidy/v1/batch/lists/$',
        '/iidy/v1/increment/batch/lists/$',
        '/$',
      ),
      segment,
      segment,
    )
    .map(([template, a, b]) => template.replace('$', a).replace('$', b));

  it('answers any method, path and body with a status below 500, errors in the usual form', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'),
        paths,
        fc.constantFrom('application/json', 'text/plain', undefined),
        fc.oneof(
          fc.constant(undefined),
          fc.string(),
          fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
        ),
        async (method, path, type, body) => {
          // A GET stream (a valid channel or group) is not what this property is about.
          const res = await fetch(`${service.base}${path}`, {
            method,
            headers: type ? { 'content-type': type } : {},
            body: method === 'GET' ? undefined : body,
          });
          const text = await res.text();
          const what = `${method} ${path} ${type} ${body} -> ${res.status} ${text.slice(0, 200)}`;
          expect(res.status < 500, what).toBe(true);
          if (res.status === 405) expect(res.headers.get('allow'), what).toBeTruthy();
          if (res.status >= 400 && !path.startsWith('/iidy/')) {
            expect((JSON.parse(text) as { error: { code: string } }).error.code, what).toMatch(
              /^PGCOORD_/,
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
