// `pgcoord lists limits ...` and `lists import --key-regex / --key-separator`, as real processes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AttemptList } from '../../src/lists/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { runCli } from '../support/cli.js';

const db = useTestDatabase();
const run = (args: string[], input?: string) =>
  runCli(['--database-url', db.url, ...args], { input });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-limits-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('pgcoord lists limits', () => {
  it('sets, shows and clears a list limits; imports keys by a regex and by a separator', async () => {
    const set = await run([
      '--json',
      'lists',
      'limits',
      'set',
      'crawl',
      '--key-regex',
      '^https?://([^/]+)',
      '--per-key-concurrency',
      '1',
      '--per-key-rate',
      '10/1000',
      '--list-concurrency',
      '50',
    ]);
    expect(set.code).toBe(0);
    const stored = {
      keyRegex: '^https?://([^/]+)',
      perKey: { concurrency: 1, rate: { limit: 10, periodMs: 1000, algorithm: 'gcra', burst: 1 } },
      concurrency: 50,
    };
    expect(JSON.parse(set.stdout)).toEqual({ list: 'crawl', limits: stored });
    expect(JSON.parse((await run(['--json', 'lists', 'limits', 'show', 'crawl'])).stdout)).toEqual({
      list: 'crawl',
      limits: stored,
    });
    expect(
      (await run(['lists', 'import', 'crawl'], 'http://a/1\nhttp://a/2\nhttp://b/1\n')).code,
    ).toBe(0);
    expect(
      (await run(['lists', 'import', 'other', '--key-separator', '\\t'], 'h1\tx1\nh2\tx2\n')).code,
    ).toBe(0);
    const { rows } = await db.pool.query<{ list: string; item: string; key: string }>(
      'SELECT list, item, key FROM pgcoord.list_items ORDER BY list, item',
    );
    expect(rows).toEqual([
      { list: 'crawl', item: 'http://a/1', key: 'a' },
      { list: 'crawl', item: 'http://a/2', key: 'a' },
      { list: 'crawl', item: 'http://b/1', key: 'b' },
      { list: 'other', item: 'x1', key: 'h1' },
      { list: 'other', item: 'x2', key: 'h2' },
    ]);
    // One per host at a time: a and b.
    const claimed = await run(['lists', 'claim', 'crawl', '--limit', '10']);
    expect(claimed.stdout.trim().split('\n')).toHaveLength(2);
    expect((await run(['lists', 'limits', 'clear', 'crawl'])).code).toBe(0);
    expect(JSON.parse((await run(['--json', 'lists', 'limits', 'show', 'crawl'])).stdout)).toEqual({
      list: 'crawl',
      limits: {},
    });
  });

  it('refuses bad limits with a one-line error naming the flag or field, exit 2, storing nothing', async () => {
    for (const args of [
      ['--per-key-concurrency', '0'],
      ['--per-key-rate', '10'],
      ['--per-key-rate', '0/1000'],
      ['--list-concurrency', '-3'],
      ['--list-concurrency', '10001'],
      ['--key-regex', '(['],
      ['--per-key-rate', '1/1000', '--rate-algorithm', 'nope'],
    ]) {
      const r = await run(['lists', 'limits', 'set', 'bad', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    expect(
      JSON.parse((await run(['--json', 'lists', 'limits', 'show', 'bad'])).stdout).limits,
    ).toEqual({});
  });

  it('lists work --per-key-concurrency 1: two items of one key never run at once', async () => {
    const log = path.join(tmp, 'work.log');
    const items = ['a-1', 'a-2', 'a-3', 'b-1', 'b-2', 'b-3', 'c-1', 'c-2'];
    // The key rule first, so the items get their keys on insert (limits set on a list that
    // already holds items give those the key '').
    const rule = await run(['lists', 'limits', 'set', 'perkey', '--key-regex', '^([a-z]+)-']);
    expect(rule.code).toBe(0);
    await new AttemptList(db.pool).insertBatch('perkey', items);
    // Each run appends "start ITEM", takes a moment (so runs of one key would overlap without
    // the limit: 8 slots for 8 items), then appends "end ITEM". Lines this short are appended
    // whole (O_APPEND), so the file is the order of events.
    const script = 'echo "start $1" >> "$0"; sleep 0.2; echo "end $1" >> "$0"';
    const r = await run([
      'lists',
      'work',
      'perkey',
      '--until-empty',
      '--poll-interval-ms',
      '50',
      '--concurrency',
      '8',
      '--per-key-concurrency',
      '1',
      '--',
      'sh',
      '-c',
      script,
      log,
      '{}',
    ]);
    expect(r.stderr).toMatch(/8 done, 0 failed .* the list is drained/);
    expect(r.code).toBe(0);
    const events = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(events).toHaveLength(16);
    // Per key: start, end, start, end ... never two starts of the key in a row.
    const running = new Map<string, string>();
    let most = 0;
    for (const line of events) {
      const [event, item] = line.split(' ') as [string, string];
      const key = item.split('-')[0]!;
      if (event === 'start') {
        expect(running.get(key), `${item} started while ${running.get(key)} ran`).toBeUndefined();
        running.set(key, item);
      } else {
        expect(running.get(key)).toBe(item);
        running.delete(key);
      }
      most = Math.max(most, running.size);
    }
    // Different keys did run at once (the limit is per key, not a global one).
    expect(most).toBeGreaterThan(1);
    expect(
      JSON.parse((await run(['--json', 'lists', 'limits', 'show', 'perkey'])).stdout),
    ).toMatchObject({ limits: { keyRegex: '^([a-z]+)-', perKey: { concurrency: 1 } } });
  });

  it('lists work refuses a bad limit flag with exit 2, claiming nothing', async () => {
    await new AttemptList(db.pool).insertBatch('badflag', ['x']);
    const r = await run(['lists', 'work', 'badflag', '--per-key-rate', 'ten', '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--per-key-rate/);
    expect(await new AttemptList(db.pool).count('badflag')).toBe(1);
  });
});
