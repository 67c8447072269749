// iidy's HTTP face under /iidy/v1/, against the replies of iidy's README
// (https://github.com/manniwood/iidy), through the real service on a real database.
import { describe, expect, it } from 'vitest';
import { createServer } from '../../src/server/index.js';
import { useTestService } from '../support/service.js';

const service = useTestService();
const { db } = service;

const TEXT = { 'content-type': 'text/plain' };
const JSON_CT = { 'content-type': 'application/json' };

async function call(
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${service.base}${path}`, {
    method,
    headers: options.headers,
    body: options.body,
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

describe('iidy single-item routes', () => {
  it('adds, reads, increments and deletes one item in text and JSON', async () => {
    expect(await call('POST', '/iidy/v1/lists/one/a', { headers: TEXT })).toMatchObject({
      status: 201,
      text: 'ADDED 1\n',
    });
    // Idempotent (pgstore's duplicate error is one of the flaws fixed): 0 new.
    expect((await call('POST', '/iidy/v1/lists/one/a', { headers: TEXT })).text).toBe('ADDED 0\n');
    expect(await call('GET', '/iidy/v1/lists/one/a', { headers: TEXT })).toMatchObject({
      status: 200,
      text: '0\n',
    });
    expect(
      (await call('POST', '/iidy/v1/lists/one/a?action=increment', { headers: TEXT })).text,
    ).toBe('INCREMENTED 1\n');
    expect(
      (await call('POST', '/iidy/v1/lists/one/nope?action=increment', { headers: TEXT })).text,
    ).toBe('INCREMENTED 0\n');
    const got = await call('GET', '/iidy/v1/lists/one/a', { headers: JSON_CT });
    expect(got.headers.get('content-type')).toMatch(/^application\/json/);
    expect(JSON.parse(got.text)).toEqual({ item: 'a', attempts: 1 });
    expect(
      JSON.parse((await call('POST', '/iidy/v1/lists/one/b', { headers: JSON_CT })).text),
    ).toEqual({ added: 1 });
    expect(await call('DELETE', '/iidy/v1/lists/one/a', { headers: TEXT })).toMatchObject({
      status: 200,
      text: 'DELETED 1\n',
    });
    expect(
      JSON.parse((await call('DELETE', '/iidy/v1/lists/one/a', { headers: JSON_CT })).text),
    ).toEqual({ deleted: 0 });
  });

  it('replies 404 "Not found." for a missing item or list', async () => {
    expect(await call('GET', '/iidy/v1/lists/one/missing', { headers: TEXT })).toMatchObject({
      status: 404,
      text: 'Not found.\n',
    });
    const json = await call('GET', '/iidy/v1/lists/no-such-list/x', { headers: JSON_CT });
    expect(json.status).toBe(404);
    expect(JSON.parse(json.text)).toEqual({ error: 'Not found.' });
  });

  it('keeps items containing "/" whole (iidy cut them)', async () => {
    expect(
      (await call('POST', '/iidy/v1/lists/urls/https://example.com/a/b?x', { headers: TEXT }))
        .status,
    ).toBe(201);
    const item = 'https://example.com/a/b';
    const enc = `/iidy/v1/lists/urls/${encodeURIComponent('https://example.com/c/d e')}`;
    expect((await call('POST', enc, { headers: TEXT })).text).toBe('ADDED 1\n');
    expect((await call('GET', `/iidy/v1/lists/urls/${item}`, { headers: JSON_CT })).text).toBe(
      JSON.stringify({ item, attempts: 0 }),
    );
    expect(JSON.parse((await call('GET', enc, { headers: JSON_CT })).text).item).toBe(
      'https://example.com/c/d e',
    );
  });

  it('treats an unknown Content-Type as text/plain, like iidy', async () => {
    const r = await call('POST', '/iidy/v1/lists/ct/z', {
      headers: { 'content-type': 'application/x-whatever' },
    });
    expect(r).toMatchObject({ status: 201, text: 'ADDED 1\n' });
    expect((await call('GET', '/iidy/v1/lists/ct/z')).text).toBe('0\n');
  });
});

describe('iidy batch routes', () => {
  it('pages a..g two at a time exactly like pgstore, with X-IIDY-Last-Item', async () => {
    const add = await call('POST', '/iidy/v1/batch/lists/letters', {
      headers: TEXT,
      body: 'a\nb\nc\nd\ne\nf\ng\n',
    });
    expect(add).toMatchObject({ status: 201, text: 'ADDED 7\n' });
    const pages: string[] = [];
    const lasts: Array<string | null> = [];
    let after = '';
    for (;;) {
      const r = await call(
        'GET',
        `/iidy/v1/batch/lists/letters?count=2&after_id=${encodeURIComponent(after)}`,
        { headers: TEXT },
      );
      expect(r.status).toBe(200);
      if (r.text === '') {
        expect(r.headers.get('x-iidy-last-item')).toBeNull();
        break;
      }
      pages.push(r.text);
      lasts.push(r.headers.get('x-iidy-last-item'));
      after = lasts[lasts.length - 1]!;
    }
    expect(pages).toEqual(['a 0\nb 0\n', 'c 0\nd 0\n', 'e 0\nf 0\n', 'g 0\n']);
    expect(lasts).toEqual(['b', 'd', 'f', 'g']);
  });

  it('speaks JSON for batches: {"items"} in, {"listentries"} out', async () => {
    const add = await call('POST', '/iidy/v1/batch/lists/j', {
      headers: JSON_CT,
      body: JSON.stringify({ items: ['x', 'y', 'z'] }),
    });
    expect(add.status).toBe(201);
    expect(JSON.parse(add.text)).toEqual({ added: 3 });
    const inc = await call('POST', '/iidy/v1/batch/lists/j?action=increment', {
      headers: JSON_CT,
      body: JSON.stringify({ items: ['x', 'x', 'q'] }),
    });
    expect(JSON.parse(inc.text)).toEqual({ incremented: 1 });
    const page = await call('GET', '/iidy/v1/batch/lists/j?count=10', { headers: JSON_CT });
    expect(page.headers.get('x-iidy-last-item')).toBe('z');
    expect(JSON.parse(page.text)).toEqual({
      listentries: [
        { item: 'x', attempts: 1 },
        { item: 'y', attempts: 0 },
        { item: 'z', attempts: 0 },
      ],
    });
    const del = await call('DELETE', '/iidy/v1/batch/lists/j', {
      headers: TEXT,
      body: 'x\ny\nmissing',
    });
    expect(del).toMatchObject({ status: 200, text: 'DELETED 2\n' });
    expect((await call('GET', '/iidy/v1/batch/lists/j?count=0', { headers: TEXT })).text).toBe('');
  });

  it('refuses a missing or bad count with a 400 (iidy gave a 500), writing nothing', async () => {
    const missing = await call('GET', '/iidy/v1/batch/lists/letters', { headers: TEXT });
    expect(missing.status).toBe(400);
    expect(missing.text).toMatch(/count/);
    for (const bad of ['abc', '-1', '1.5', '100001']) {
      const r = await call('GET', `/iidy/v1/batch/lists/letters?count=${bad}`, {
        headers: JSON_CT,
      });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.text)).toMatchObject({ code: 'PGCOORD_VALIDATION', field: 'count' });
    }
  });

  it('refuses bad items with a 400 naming the item, and writes nothing', async () => {
    const r = await call('POST', '/iidy/v1/batch/lists/bad', {
      headers: JSON_CT,
      body: JSON.stringify({ items: ['ok', 'x'.repeat(5000)] }),
    });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text)).toMatchObject({ field: 'items[1]' });
    const nul = await call('POST', '/iidy/v1/batch/lists/bad', {
      headers: TEXT,
      body: 'a\nb\u0000c',
    });
    expect(nul.status).toBe(400);
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgcoord.list_items WHERE list = 'bad'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('turns a database failure into a 5xx, never an empty list', async () => {
    // A pool on a port nothing listens on: every query fails to connect.
    const broken = db.newPool({ connectionString: 'postgres://postgres@127.0.0.1:1/x', max: 1 });
    const other = await createServer({ pool: broken, port: 0, logger: false });
    try {
      const url = await other.listen();
      const r = await fetch(`${url}/iidy/v1/batch/lists/letters?count=2`, { headers: TEXT });
      expect(r.status).toBe(503);
      expect(await r.text()).toMatch(/ECONNREFUSED|connect/i);
      const j = await fetch(`${url}/iidy/v1/lists/letters/a`, { headers: JSON_CT });
      expect(j.status).toBe(503);
      expect(JSON.parse(await j.text())).toMatchObject({ code: 'PGCOORD_CONNECTION' });
    } finally {
      await other.close();
    }
  });
});

describe('iidy request bodies', () => {
  it('answers an empty batch body with a zero count, like iidy, in text and JSON', async () => {
    for (const headers of [{}, TEXT, { 'content-type': 'application/x-www-form-urlencoded' }]) {
      expect(await call('POST', '/iidy/v1/batch/lists/empty', { headers, body: '' })).toMatchObject(
        { status: 201, text: 'ADDED 0\n' },
      );
      expect(await call('POST', '/iidy/v1/batch/lists/empty', { headers })).toMatchObject({
        status: 201,
        text: 'ADDED 0\n',
      });
      expect(await call('DELETE', '/iidy/v1/batch/lists/empty', { headers })).toMatchObject({
        status: 200,
        text: 'DELETED 0\n',
      });
      expect(
        await call('POST', '/iidy/v1/increment/batch/lists/empty', { headers, body: '' }),
      ).toMatchObject({ status: 200, text: 'INCREMENTED 0\n' });
    }
    const json = await call('POST', '/iidy/v1/batch/lists/empty', { headers: JSON_CT, body: '' });
    expect({ status: json.status, body: JSON.parse(json.text) as unknown }).toEqual({
      status: 201,
      body: { added: 0 },
    });
    const del = await call('DELETE', '/iidy/v1/batch/lists/empty', { headers: JSON_CT });
    expect({ status: del.status, body: JSON.parse(del.text) as unknown }).toEqual({
      status: 200,
      body: { deleted: 0 },
    });
  });

  it("serves increments on both paths: iidy's /increment/ and ?action=increment", async () => {
    await call('POST', '/iidy/v1/batch/lists/both', { headers: TEXT, body: 'a\nb/c\n' });
    expect(
      await call('POST', '/iidy/v1/increment/lists/both/b/c', { headers: JSON_CT }),
    ).toMatchObject({ status: 200, text: '{"incremented":1}' });
    expect(await call('POST', '/iidy/v1/lists/both/b/c?action=increment')).toMatchObject({
      status: 200,
      text: 'INCREMENTED 1\n',
    });
    expect(
      await call('POST', '/iidy/v1/increment/batch/lists/both', { headers: TEXT, body: 'a\nb/c' }),
    ).toMatchObject({ status: 200, text: 'INCREMENTED 2\n' });
    expect((await call('GET', '/iidy/v1/batch/lists/both?count=10')).text).toBe('a 1\nb/c 3\n');
  });

  it('refuses a JSON body of the wrong shape with a 400 naming items, writing nothing', async () => {
    for (const [body, field] of [
      ['{"items":[1,2]}', 'items[0]'],
      ['{"items":["a",null]}', 'items[1]'],
      ['{}', 'items'],
      ['{"items":"a"}', 'items'],
      ['"a\\nb"', 'body'],
      ['["a","b"]', 'body'],
      ['null', 'body'],
      ['3', 'body'],
    ] as const) {
      for (const path of [
        '/iidy/v1/batch/lists/shape',
        '/iidy/v1/increment/batch/lists/shape',
        '/iidy/v1/batch/lists/shape?action=increment',
      ]) {
        for (const method of path.includes('increment') ? ['POST'] : ['POST', 'DELETE']) {
          const r = await call(method, path, { headers: JSON_CT, body });
          expect({ body, method, path, status: r.status }).toEqual({
            body,
            method,
            path,
            status: 400,
          });
          expect(JSON.parse(r.text), `${method} ${path} ${body}`).toMatchObject({
            code: 'PGCOORD_VALIDATION',
            field,
          });
        }
      }
    }
    expect((await call('GET', '/iidy/v1/batch/lists/shape?count=10')).text).toBe('');
  });
});

describe('items the text format cannot carry', () => {
  it('refuses an item with a line break in a text request, and accepts it in JSON', async () => {
    for (const item of ['a\nb', 'a\rb', 'a\r\n']) {
      const path = `/iidy/v1/lists/lines/${encodeURIComponent(item)}`;
      for (const [method, suffix] of [
        ['POST', ''],
        ['GET', ''],
        ['DELETE', ''],
        ['POST', '?action=increment'],
      ] as const) {
        const r = await call(method, path + suffix, { headers: TEXT });
        expect({ item, method, status: r.status }).toEqual({ item, method, status: 400 });
        expect(r.text).toMatch(/line break/);
      }
      const inc = await call('POST', `/iidy/v1/increment/lists/lines/${encodeURIComponent(item)}`);
      expect(inc.status).toBe(400);
    }
    const lone = await call('POST', '/iidy/v1/batch/lists/lines', {
      headers: TEXT,
      body: 'ok\na\rb\n',
    });
    expect(lone.status).toBe(400);
    expect(lone.text).toMatch(/items\[1\]/);
    const json = await call('POST', `/iidy/v1/lists/lines/${encodeURIComponent('x\ny')}`, {
      headers: JSON_CT,
    });
    expect(json.status).toBe(201);
    expect(
      JSON.parse(
        (await call('GET', '/iidy/v1/batch/lists/lines?count=5', { headers: JSON_CT })).text,
      ),
    ).toEqual({ listentries: [{ item: 'x\ny', attempts: 0 }] });
  });

  it('refuses a text page that would hold an item with a line break, instead of printing it raw', async () => {
    await call('POST', '/iidy/v1/batch/lists/raw', {
      headers: JSON_CT,
      body: JSON.stringify({ items: ['a', 'b\nc 7', 'd'] }),
    });
    const r = await call('GET', '/iidy/v1/batch/lists/raw?count=10', { headers: TEXT });
    expect(r.status).toBe(400);
    expect(r.text).toMatch(/application\/json/);
    // A page before the item is fine.
    expect((await call('GET', '/iidy/v1/batch/lists/raw?count=1')).text).toBe('a 0\n');
  });

  it('always percent-encodes X-IIDY-Last-Item', async () => {
    const items = ['plain.txt', 'a%41', 'é%41', 'a b', 'x/y?z'];
    for (const item of items) {
      await call('DELETE', '/iidy/v1/batch/lists/hdr', {
        headers: JSON_CT,
        body: JSON.stringify({ items }),
      });
      await call('POST', `/iidy/v1/lists/hdr/${encodeURIComponent(item)}`);
      const r = await call('GET', '/iidy/v1/batch/lists/hdr?count=10');
      expect(r.headers.get('x-iidy-last-item'), item).toBe(encodeURIComponent(item));
      expect(decodeURIComponent(r.headers.get('x-iidy-last-item')!)).toBe(item);
    }
  });
});
