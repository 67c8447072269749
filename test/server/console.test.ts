// The console in a real browser (headless Chromium): each flow asserts what the page shows
// while real processes change the database underneath it.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChangeCapture, ChangeConsumer } from '../../src/changes/index.js';
import { LeaseManager } from '../../src/coordination/index.js';
import { AttemptList } from '../../src/lists/index.js';
import { createServer, type PgcoordServer } from '../../src/server/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import {
  SIZES,
  SKIP_REASON,
  buildConsole,
  hasChromium,
  openPage,
  screenshot,
  useBrowser,
} from '../support/browser.js';
import { runCli } from '../support/cli.js';

if (!hasChromium) console.warn(`skipping: ${SKIP_REASON}`);

const db = useTestDatabase();
const holder = useBrowser();
let server: PgcoordServer;
let base: string;
let lists: AttemptList;

beforeAll(async () => {
  await buildConsole();
  server = await createServer({ pool: db.pool, port: 0, logger: false, consoleIntervalMs: 300 });
  base = await server.listen();
  lists = new AttemptList(db.pool);
});
afterAll(async () => {
  await server?.close();
});

/** The text of one cell of a list's row, e.g. cell(page, 'jobs', 'size'). */
function cell(page: Page, list: string, col: string): Promise<string | null> {
  return page
    .locator(`#lists tr[data-list="${list}"] td[data-col="${col}"]`)
    .textContent({ timeout: 1_000 })
    .catch(() => null);
}

function groupLag(page: Page, group: string): Promise<number | null> {
  return page
    .locator(`#changes tr[data-group="${group}"] td[data-col="lag"]`)
    .first()
    .textContent({ timeout: 1_000 })
    .then((t) => (t === null ? null : Number(t.replace(/,/g, ''))))
    .catch(() => null);
}

describe.skipIf(!hasChromium)('the console in a browser', () => {
  it('shows a list’s counts, and follows inserts made by another process without a reload', async () => {
    await lists.insertBatch('jobs', ['a', 'b', 'c']);
    const { page, errors } = await openPage(holder.browser, SIZES.desktop);
    await page.goto(`${base}/`);
    await waitFor(async () => (await cell(page, 'jobs', 'size')) === '3', {
      message: 'the page shows jobs with 3 items',
    });
    expect(await cell(page, 'jobs', 'claimable')).toBe('3');
    expect(await cell(page, 'jobs', 'dead')).toBe('0');
    // A mark on the document: still there afterwards means the page was not reloaded.
    await page.evaluate('window.mark = 42');
    const cli = await runCli(['lists', 'import', 'jobs', '--database-url', db.url], {
      input: 'd\ne\n',
    });
    expect(cli.code, cli.stderr).toBe(0);
    await waitFor(async () => (await cell(page, 'jobs', 'size')) === '5', {
      message: 'the page shows the 2 new items',
    });
    expect(await page.evaluate('window.mark')).toBe(42);
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it('shows an item failed to dead and requeues it from the page', async () => {
    await lists.insertBatch('mail', ['m1', 'm2']);
    const [claim] = await lists.claim('mail', { limit: 1, leaseMs: 60_000 });
    const { page } = await openPage(holder.browser, SIZES.desktop);
    await page.goto(`${base}/`);
    await waitFor(async () => (await cell(page, 'mail', 'leased')) === '1');
    const failed = await lists.fail('mail', [claim!], { maxAttempts: 1 });
    expect(failed.dead).toEqual([claim!.item]);
    await waitFor(async () => (await cell(page, 'mail', 'dead')) === '1', {
      message: 'the page shows the dead item in the counts',
    });
    await page.getByRole('button', { name: 'Browse mail' }).click();
    const row = page.locator(`tr[data-dead="${claim!.item}"]`);
    await row.waitFor();
    await row.getByRole('button', { name: `Requeue ${claim!.item}` }).click();
    await waitFor(async () => (await cell(page, 'mail', 'dead')) === '0', {
      message: 'the page shows no dead item after the requeue',
    });
    expect(await cell(page, 'mail', 'claimable')).toBe('2');
    await page.getByText(`Requeued 1 item of mail.`).waitFor();
    expect(await lists.getOne('mail', claim!.item)).toBe(0);
    // The item browser pages the list; a prefix narrows it.
    await page.getByLabel('Prefix').fill('m2');
    await page.getByRole('button', { name: 'Search' }).click();
    await waitFor(
      async () => (await page.locator('table.items td.item').allTextContents()).join() === 'm2',
    );
    await page.context().close();
  });

  it('shows a group’s lag rise while its consumer is stopped, and fall once it runs again', async () => {
    await db.pool.query('CREATE TABLE orders (id serial PRIMARY KEY, note text)');
    const capture = new ChangeCapture(db.pool);
    await capture.track('orders');
    await capture.createGroup('billing');
    const handled: string[] = [];
    const consumer = () =>
      new ChangeConsumer(db.pool, {
        group: 'billing',
        handler: async (changes) => {
          for (const c of changes) handled.push(c.id);
        },
      });
    let running = consumer();
    await running.start();
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await db.pool.query('INSERT INTO orders (note) VALUES ($1)', [`order ${++written}`]);
      }
    })();
    try {
      const { page } = await openPage(holder.browser, SIZES.desktop);
      await page.goto(`${base}/`);
      await waitFor(async () => (await groupLag(page, 'billing')) !== null);
      await running.stop();
      const peak = await waitFor(
        async () => {
          const lag = await groupLag(page, 'billing');
          return lag !== null && lag >= 200 ? lag : null;
        },
        { timeoutMs: 30_000, message: 'the page shows the lag rising' },
      );
      running = consumer();
      await running.start();
      await waitFor(
        async () => {
          const lag = await groupLag(page, 'billing');
          return lag !== null && lag < peak / 4;
        },
        { timeoutMs: 30_000, message: 'the page shows the lag falling while the writer runs' },
      );
      writing = false;
      await writer;
      await waitFor(async () => (await groupLag(page, 'billing')) === 0, {
        timeoutMs: 30_000,
        message: 'the page shows the group caught up',
      });
      expect(handled.length).toBeGreaterThanOrEqual(written);
      await page.context().close();
    } finally {
      writing = false;
      await writer;
      await running.stop();
    }
  });

  it('renders at 1280x800 and 390x844 (screenshots for the docs)', async () => {
    // Something in every panel.
    await lists.insertBatch(
      'thumbnails',
      Array.from({ length: 40 }, (_, i) => `images/${String(i).padStart(4, '0')}.jpg`),
    );
    await lists.claim('thumbnails', { limit: 6, leaseMs: 600_000 });
    // A list with keys and a per-key limit: the page's key table.
    await lists.setLimits('crawl', { keyRegex: '^([^/]+)/', perKey: { concurrency: 2 } });
    await lists.insertBatch('crawl', ['a.example/1', 'a.example/2', 'a.example/3', 'b.example/1']);
    // A live worker, its two handlers held until the screenshots are taken.
    await lists.insertBatch('resize', ['r1', 'r2', 'r3']);
    let open!: () => void;
    const held = new Promise<void>((resolve) => (open = resolve));
    const worker = lists.work('resize', () => held, { concurrency: 2 });
    await waitFor(async () => (await lists.workers('resize'))[0]?.inFlight === 2);
    const leases = new LeaseManager(db.pool);
    const lease = await leases.acquire('nightly-report', { owner: 'scheduler-1', ttlMs: 600_000 });
    for (const key of ['alice', 'bob', 'alice', 'alice']) {
      await fetch(`${base}/v1/limits/api/${key}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ limit: 2, periodMs: 60_000 }),
      });
    }
    for (const [size, name] of [
      [SIZES.desktop, 'console-1280x800'],
      [SIZES.phone, 'console-390x844'],
    ] as const) {
      const { page, errors } = await openPage(holder.browser, size);
      await page.goto(`${base}/`);
      await page.locator('#leases').getByText('nightly-report').waitFor();
      // The write buttons a read-only service hides are here.
      expect(await page.locator('#leases').getByRole('button', { name: 'Release' }).count()).toBe(
        1,
      );
      await page.locator('#limits').getByText('alice: denied', { exact: false }).first().waitFor();
      await waitFor(async () => (await cell(page, 'thumbnails', 'leased')) === '6');
      await page.locator('#workers').getByText('resize').waitFor();
      const keyRow = page.getByRole('table', { name: 'Keys and limits' }).getByRole('row', {
        name: /a\.example/,
      });
      await keyRow.getByText('2 in flight').waitFor();
      expect(await keyRow.getByRole('cell').allTextContents()).toEqual(
        expect.arrayContaining(['crawl', '3', '2 in flight']),
      );
      // Usable at this width: the page itself never scrolls sideways (wide tables scroll inside).
      const overflow = await page.evaluate<number>(
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      );
      expect(overflow, `horizontal overflow at ${size.width}px`).toBeLessThanOrEqual(0);
      await screenshot(page, name);
      // Keyboard: the first Tab reaches the skip link, the next ones the sections.
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement?.textContent')).toBe('Skip to content');
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement?.textContent')).toBe('Lists');
      expect(errors).toEqual([]);
      await page.context().close();
    }
    await leases.release(lease!);
    open();
    await worker.stop();
  });
});
