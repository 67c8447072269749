// Who may see and steer the console: `--read-only` (no write buttons, every write a 403), a
// token (the page asks for it and reads nothing without it), and how the page is served (strict
// CSP, caching, the size budget, one snapshot per interval for every open page).
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ChangeCapture, ChangeConsumer } from '../../src/changes/index.js';
import { LeaseManager } from '../../src/coordination/index.js';
import { AttemptList } from '../../src/lists/index.js';
import { createServer, type PgcoordServer } from '../../src/server/index.js';
import { ConsoleCollector } from '../../src/server/console-collect.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import {
  SIZES,
  SKIP_REASON,
  buildConsole,
  hasChromium,
  openPage,
  useBrowser,
} from '../support/browser.js';
import { repoRoot } from '../support/cli.js';
import { openSse } from '../support/sse.js';

if (!hasChromium) console.warn(`skipping the browser flows: ${SKIP_REASON}`);

const TOKEN = 'console-test-token-0123456789';
const db = useTestDatabase();
const holder = useBrowser();
const servers: PgcoordServer[] = [];
let lists: AttemptList;
const logLines: string[] = [];

async function start(options: { readOnly?: boolean; token?: string } = {}): Promise<string> {
  const logger = pino(
    { level: 'debug', redact: { paths: ['req.headers.authorization'], censor: '[redacted]' } },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString());
        done();
      },
    }),
  );
  const server = await createServer({
    pool: db.pool,
    port: 0,
    logger,
    consoleIntervalMs: 200,
    ...options,
  });
  servers.push(server);
  return server.listen();
}

beforeAll(async () => {
  await buildConsole();
  lists = new AttemptList(db.pool);
  await lists.insertBatch('reports', ['r1', 'r2']);
  const [claim] = await lists.claim('reports', { limit: 1, leaseMs: 60_000 });
  await lists.fail('reports', [claim!], { maxAttempts: 1 });
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

describe('how the console is served', () => {
  it('serves the page with a strict CSP, hashed files cached for a year, nothing from another origin', async () => {
    const base = await start();
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(page.headers.get('content-security-policy')).not.toMatch(
      /unsafe-inline|unsafe-eval|https?:/,
    );
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    const files = [...html.matchAll(/(?:src|href)="\/console\/([^"]+)"/g)].map((m) => m[1]!);
    expect(files.some((f) => /^app-[A-Z0-9]{8}\.js$/.test(f))).toBe(true);
    for (const f of files.filter((f) => f.startsWith('app-'))) {
      const res = await fetch(`${base}/console/${f}`);
      expect(res.status, f).toBe(200);
      expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(await res.text()).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
    }
    // Only the files read at start: nothing else of the disk.
    for (const probe of ['..%2Fpackage.json', 'missing.js', '%2E%2E%2F%2E%2E%2Fpackage.json']) {
      expect((await fetch(`${base}/console/${probe}`)).status, probe).toBe(404);
    }
  });

  it('weighs at most 150 KB gzipped, everything the page loads included', () => {
    const dir = path.join(repoRoot, 'dist/console');
    let total = 0;
    for (const name of fs.readdirSync(dir).filter((n) => !n.startsWith('.'))) {
      total += gzipSync(fs.readFileSync(path.join(dir, name)), { level: 9 }).length;
    }
    console.log(`console: ${(total / 1024).toFixed(1)} KB gzipped`);
    expect(total).toBeLessThanOrEqual(150 * 1024);
  });

  it('computes one snapshot per interval for all open pages, not one per page', async () => {
    const base = await start();
    const collect = vi.spyOn(ConsoleCollector.prototype, 'collect');
    try {
      const clients = await Promise.all(
        Array.from({ length: 6 }, () => openSse(`${base}/v1/console/events`)),
      );
      for (const c of clients) await c.next((e) => e.event === 'history');
      // Three snapshots reach every page...
      for (let i = 0; i < 3; i++) {
        await Promise.all(
          clients.map((c) =>
            c.next(
              (e) =>
                e.event === 'snapshot' && c.events.filter((x) => x.event === 'snapshot').length > i,
            ),
          ),
        );
      }
      for (const c of clients) c.close();
      // ...and they are the same snapshots: as many collections as distinct snapshots seen.
      const seen = new Set(
        clients.flatMap((c) => c.events.filter((e) => e.event === 'snapshot').map((e) => e.data)),
      );
      expect(seen.size).toBeGreaterThanOrEqual(3);
      expect(collect.mock.calls.length).toBeLessThanOrEqual(seen.size + 1);
      const snapshot = JSON.parse([...seen][0]!) as {
        lists: Array<{ list: string; dead: number }>;
      };
      expect(snapshot.lists).toContainEqual(expect.objectContaining({ list: 'reports', dead: 1 }));
    } finally {
      collect.mockRestore();
    }
  });
});

describe('the service panel', () => {
  it('reports the service’s own traffic per route over the interval, its stream left out', async () => {
    const base = await start();
    const feed = await openSse(`${base}/v1/console/events`);
    try {
      await feed.next((e) => e.event === 'snapshot');
      const busy = await waitFor(async () => {
        for (let i = 0; i < 5; i++) await (await fetch(`${base}/v1/lists`)).arrayBuffer();
        const last = feed.events.filter((e) => e.event === 'snapshot').at(-1)!;
        const s = JSON.parse(last.data) as {
          service: { routes: Array<{ method: string; route: string; perSecond: number }> };
          sample: { requestsPerSecond: number; p95Ms: number | null };
        };
        return s.service.routes.some((r) => r.route === '/v1/lists') ? s : null;
      });
      expect(busy.service.routes.find((r) => r.route === '/v1/lists')!.perSecond).toBeGreaterThan(
        0,
      );
      expect(busy.service.routes.map((r) => r.route)).not.toContain('/v1/console/events');
      expect(busy.sample.requestsPerSecond).toBeGreaterThan(0);
      expect(busy.sample.p95Ms).toBeGreaterThan(0);
    } finally {
      feed.close();
    }
  });
});

describe('--read-only', () => {
  it('refuses every write with 403 PGCOORD_READ_ONLY and still answers reads', async () => {
    const base = await start({ readOnly: true });
    for (const [method, url, body] of [
      ['POST', '/v1/lists/reports/dead/requeue', {}],
      ['POST', '/v1/lists/reports/items', { items: ['x'] }],
      ['DELETE', '/v1/changes/groups/g', undefined],
      ['PUT', '/v1/kv/k', { value: 1 }],
    ] as const) {
      const res = await fetch(`${base}${url}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(res.status, `${method} ${url}`).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
        'PGCOORD_READ_ONLY',
      );
    }
    expect((await fetch(`${base}/v1/lists/reports`)).status).toBe(200);
    expect(await lists.stats('reports')).toMatchObject({ total: 2, dead: 1 });
  });

  it.skipIf(!hasChromium)(
    'shows no requeue button, and a POST forged from the page gets 403',
    async () => {
      const base = await start({ readOnly: true });
      // Something every write button would act on: a lease, a consumer group with a dead letter.
      const lease = await new LeaseManager(db.pool).acquire('ro-lease', { ttlMs: 600_000 });
      await db.pool.query('CREATE TABLE ro_table (id int PRIMARY KEY)');
      const capture = new ChangeCapture(db.pool);
      await capture.track('ro_table');
      await capture.createGroup('ro-group');
      const failing = new ChangeConsumer(db.pool, {
        group: 'ro-group',
        maxAttempts: 1,
        handler: async () => {
          throw new Error('refused on purpose');
        },
      });
      await failing.start();
      try {
        await db.pool.query('INSERT INTO ro_table VALUES (1)');
        await waitFor(async () => (await capture.deadLetters('ro-group')).length === 1);
      } finally {
        await failing.stop();
      }
      const { page, errors } = await openPage(holder.browser, SIZES.desktop);
      await page.goto(`${base}/`);
      await page.getByText('read-only', { exact: true }).waitFor();
      await page.locator('#leases').getByText('ro-lease').waitFor();
      await page.locator('#changes tr[data-group="ro-group"]').waitFor();
      await page.locator('#changes').getByText('refused on purpose').first().waitFor();
      await page.getByRole('button', { name: 'Browse reports' }).click();
      await page.locator('tr[data-dead]').first().waitFor();
      expect(await page.locator('tr[data-dead]').allTextContents()).toHaveLength(1);
      expect(await page.getByRole('button', { name: /requeue/i }).count()).toBe(0);
      expect(await page.getByRole('button', { name: /drop|replay|release/i }).count()).toBe(0);
      const forged = await page.evaluate(async () => {
        const res = await fetch('/v1/lists/reports/dead/requeue', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        });
        return { status: res.status, body: (await res.json()) as { error: { code: string } } };
      });
      expect(forged).toMatchObject({ status: 403, body: { error: { code: 'PGCOORD_READ_ONLY' } } });
      expect(await lists.stats('reports')).toMatchObject({ dead: 1 });
      expect(errors.filter((e) => !/403/.test(e))).toEqual([]);
      await page.context().close();
      await new LeaseManager(db.pool).release(lease!);
    },
  );
});

describe.skipIf(!hasChromium)('with a token', () => {
  it('asks for the token, reads nothing without it, and keeps it out of URLs and logs', async () => {
    const base = await start({ token: TOKEN });
    const { page, api } = await openPage(holder.browser, SIZES.desktop);
    const urls: string[] = [];
    page.on('request', (r) => urls.push(r.url()));
    await page.goto(`${base}/`);
    const field = page.getByLabel('Token', { exact: true });
    await field.waitFor();
    // Nothing of the service's data reached the page: every API request so far was refused.
    expect(api.length).toBeGreaterThan(0);
    expect(api.every((r) => r.status === 401)).toBe(true);
    expect(await page.locator('#lists').count()).toBe(0);
    expect(await page.getByText('reports').count()).toBe(0);

    await field.fill('wrong-token-wrong-token');
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.getByText('The token given was refused.', { exact: false }).waitFor();
    expect(api.every((r) => r.status === 401)).toBe(true);

    await page.getByLabel('Token', { exact: true }).fill(TOKEN);
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.locator('#lists tr[data-list="reports"]').waitFor();
    expect(api.some((r) => r.status === 200)).toBe(true);
    // Writes carry it too.
    await page.getByRole('button', { name: 'Browse reports' }).click();
    await page.getByRole('button', { name: 'Requeue all dead items' }).click();
    await waitFor(async () => (await lists.stats('reports')).dead === 0);
    expect(urls.filter((u) => u.includes(TOKEN))).toEqual([]);
    expect(logLines.filter((l) => l.includes(TOKEN))).toEqual([]);
    await page.context().close();
  });
});
