// A real browser for the console tests: Debian's chromium driven headless by playwright-core
// (no browser download). CI installs the package (.ci/run); without it the tests say so and skip.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { repoRoot } from './cli.js';

export const CHROMIUM = process.env.PGCOORD_CHROMIUM ?? '/usr/bin/chromium';
export const hasChromium = fs.existsSync(CHROMIUM);
export const SKIP_REASON = `the console's browser tests need Chromium at ${CHROMIUM} (apt-get install chromium; .ci/run does)`;

/** The two sizes the console must be usable at. */
export const SIZES = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;

/** Builds the console into dist/console unless it is built from these sources already. */
export async function buildConsole(): Promise<void> {
  await promisify(execFile)(
    process.execPath,
    [path.join(repoRoot, 'scripts/build-console.mjs'), '--if-changed'],
    { cwd: repoRoot },
  );
}

/** One headless Chromium for the calling file, launched before its tests, closed after. */
export function useBrowser(): { browser: Browser } {
  const holder = {} as { browser: Browser };
  beforeAll(async () => {
    if (!hasChromium) return;
    holder.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // As root in a container the sandbox cannot start; the pages are our own.
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
    });
  });
  afterAll(async () => {
    await holder.browser?.close();
  });
  return holder;
}

/**
 * A new page at `size` that records every response of the service's API (`/v1/`) and every
 * console error, so a test can say what the page asked for and what it got.
 */
export async function openPage(
  browser: Browser,
  size: { width: number; height: number },
): Promise<{ page: Page; api: Array<{ url: string; status: number }>; errors: string[] }> {
  const context = await browser.newContext({ viewport: size });
  const page = await context.newPage();
  const api: Array<{ url: string; status: number }> = [];
  const errors: string[] = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/v1/'))
      api.push({ url: r.url(), status: r.status() });
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  return { page, api, errors };
}

/** Writes a screenshot to docs/images/ (committed: the docs show the current console). */
export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({
    path: path.join(repoRoot, 'docs/images', `${name}.png`),
    fullPage: false,
  });
}
