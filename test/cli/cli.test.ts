// The pgcoord command, spawned as a real process against a real database.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import { runCli, startCli } from '../support/cli.js';

const db = useTestDatabase();
const run = (args: string[], input?: string) =>
  runCli(['--database-url', db.url, ...args], { input });

describe('pgcoord CLI', () => {
  it('prints help with an example per command and exits 0; usage errors exit 2', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit codes:/);
    for (const cmd of ['serve', 'lists add', 'kv cas', 'limit', 'listen']) {
      const r = await runCli([...cmd.split(' '), '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(/Example:/);
    }
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command/);
    const badOpt = await run(['lists', 'page', 'x', '--count', 'abc']);
    expect(badOpt.code).toBe(2);
  });

  it('runs the lists commands, with --json on reads', async () => {
    expect((await run(['lists', 'add', 'l', 'a', 'b/c', 'd'])).stdout).toBe('added 3\n');
    expect((await run(['lists', 'inc', 'l', 'a'])).stdout).toBe('incremented 1\n');
    expect((await run(['lists', 'get', 'l', 'a'])).stdout).toBe('1\n');
    expect(JSON.parse((await run(['--json', 'lists', 'get', 'l', 'b/c'])).stdout)).toEqual({
      item: 'b/c',
      attempts: 0,
    });
    const missing = await run(['lists', 'get', 'l', 'zzz']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^pgcoord: no item "zzz"/);
    expect((await run(['lists', 'page', 'l', '--count', '2'])).stdout).toBe('a\t1\nb/c\t0\n');
    expect(
      JSON.parse((await run(['--json', 'lists', 'page', 'l', '--after', 'b/c'])).stdout),
    ).toEqual({
      entries: [{ item: 'd', attempts: 0 }],
      last: 'd',
    });
    expect((await run(['lists', 'del', 'l', 'd', 'nope'])).stdout).toBe('deleted 1\n');
    const claim = JSON.parse(
      (await run(['--json', 'lists', 'claim', 'l', '--limit', '5', '--lease-ms', '60000'])).stdout,
    );
    expect(claim.claims).toHaveLength(2);
    expect((await run(['lists', 'stats', 'l'])).stdout).toBe('l\t2\n');
  });

  it('imports items from stdin and from a file, reporting the rate', async () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `item-${i}`).join('\n') + '\n';
    const r = await run(['lists', 'import', 'big'], lines);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^imported 20000 items \(20000 new\) in [\d.]+ s: [\d,]+ items\/s\n$/);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-cli-')), 'items.txt');
    fs.writeFileSync(file, 'item-1\nitem-new\n');
    const again = JSON.parse((await run(['--json', 'lists', 'import', 'big', file])).stdout);
    expect(again).toMatchObject({ read: 2, inserted: 1 });
    fs.rmSync(path.dirname(file), { recursive: true });
  });

  it('refuses bad input with a one-line error and exit 2, writing nothing', async () => {
    const r = await run(['lists', 'add', 'bad', 'ok', 'x'.repeat(3000)]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/items\[1\].*2048 bytes.*PGCOORD_VALIDATION/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const verbose = await run(['--verbose', 'lists', 'add', 'bad', '']);
    expect(verbose.code).toBe(2);
    expect(verbose.stderr).toMatch(/\n\s+at /);
    expect((await run(['lists', 'stats', 'bad'])).stdout).toBe('bad\t0\n');
  });

  it('runs kv get/set/cas/del with exit codes for missing and lost races', async () => {
    expect((await run(['kv', 'get', 'k'])).code).toBe(3);
    expect((await run(['kv', 'set', 'k', 'v1'])).code).toBe(0);
    expect((await run(['kv', 'get', 'k'])).stdout).toBe('v1\n');
    expect((await run(['kv', 'cas', 'k', 'v1', 'v2'])).code).toBe(0);
    const lost = await run(['kv', 'cas', 'k', 'v1', 'v3']);
    expect(lost.code).toBe(4);
    expect(JSON.parse((await run(['--json', 'kv', 'get', 'k'])).stdout)).toEqual({
      key: 'k',
      value: 'v2',
    });
    expect((await run(['kv', 'cas', 'fresh', '', 'me', '--absent'])).code).toBe(0);
    expect((await run(['kv', 'del', 'k'])).stdout).toBe('deleted\n');
  });

  it('decides rate limits: exit 0 allowed, 4 denied', async () => {
    const args = ['limit', 'cli', 'u1', '--limit', '2', '--period-ms', '60000'];
    expect((await run(args)).code).toBe(0);
    expect((await run(args)).code).toBe(0);
    const denied = await run(['--json', ...args]);
    expect(denied.code).toBe(4);
    expect(JSON.parse(denied.stdout)).toMatchObject({ allowed: false });
    expect((await run([...args, '--algorithm', 'nope'])).code).toBe(2);
  });

  it('listens like tail -f and notifies', async () => {
    const listen = startCli(['--database-url', db.url, 'listen', 'cli-chan']);
    try {
      await waitFor(() => listen.stderr().includes('listening on'), { timeoutMs: 30_000 });
      expect((await run(['notify', 'cli-chan', 'hello there'])).code).toBe(0);
      await waitFor(() => listen.stdout().includes('hello there\n'), { timeoutMs: 10_000 });
    } finally {
      listen.child.kill('SIGINT');
    }
    expect(await listen.exited).toBe(0);
  });

  it('watches the changes of a table live', async () => {
    await db.pool.query('CREATE TABLE watched (id int PRIMARY KEY, v text)');
    const watch = startCli(['--database-url', db.url, 'watch', 'watched', '--track']);
    try {
      await waitFor(() => watch.stderr().includes('watching public.watched'), {
        timeoutMs: 30_000,
      });
      await db.pool.query(`INSERT INTO watched VALUES (7, 'x')`);
      await waitFor(() => /\tINSERT\tpublic\.watched\t\{"id":7\}\n/.test(watch.stdout()), {
        timeoutMs: 20_000,
      });
    } finally {
      watch.child.kill('SIGINT');
    }
    expect(await watch.exited).toBe(0);
    // The throw-away group is gone.
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgcoord.change_groups WHERE group_name LIKE 'pgcoord-watch-%'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it("prints the cluster pool's topology", async () => {
    const r = await run(['topology']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\S+:\d+\tprimary\tup\tread-write\tlag -\n$/);
    const json = JSON.parse((await run(['--json', 'topology'])).stdout);
    expect(json.instances[0]).toMatchObject({ role: 'primary', health: 'up' });
  });

  it('reports an unreachable database with exit 5', async () => {
    const r = await runCli([
      '--database-url',
      'postgres://postgres@127.0.0.1:1/x',
      'kv',
      'get',
      'k',
    ]);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/PGCOORD_CONNECTION/);
  });
});
