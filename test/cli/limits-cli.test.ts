// `pgcoord lists limits ...` and `lists import --key-regex / --key-separator`, as real processes.
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runCli } from '../support/cli.js';

const db = useTestDatabase();
const run = (args: string[], input?: string) =>
  runCli(['--database-url', db.url, ...args], { input });

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
});
