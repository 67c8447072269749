// The pgcoord command, spawned as a real process against a real database.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AttemptList } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import { repoRoot, runCli, startCli } from '../support/cli.js';

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

  it('lists live workers, as lines or JSON', async () => {
    const list = new AttemptList(db.pool);
    const worker = list.work('cli-workers', async () => undefined, { concurrency: 3 });
    try {
      await waitFor(async () => (await list.workers('cli-workers')).length === 1);
      const text = await run(['lists', 'workers']);
      expect(text.code).toBe(0);
      const fields = text.stdout.trimEnd().split('\t');
      expect(fields.slice(0, 5)).toEqual([
        worker.id,
        'cli-workers',
        os.hostname(),
        String(process.pid),
        '0/3',
      ]);
      expect(fields.slice(5).map((t) => new Date(t).toISOString())).toEqual(fields.slice(5));
      const json = JSON.parse((await run(['lists', 'workers', 'cli-workers', '--json'])).stdout);
      expect(json).toEqual({
        workers: [
          {
            id: worker.id,
            list: 'cli-workers',
            host: os.hostname(),
            pid: process.pid,
            concurrency: 3,
            inFlight: 0,
            startedAt: fields[5],
            heartbeatAt: expect.any(String),
          },
        ],
      });
      expect((await run(['lists', 'workers', 'other'])).stdout).toBe('');
    } finally {
      await worker.stop();
    }
    expect(JSON.parse((await run(['--json', 'lists', 'workers'])).stdout)).toEqual({ workers: [] });
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

  it('adds and imports with --priority, --delay-ms and --run-at', async () => {
    const sched = (list: string) =>
      db.pool
        .query<{ item: string; priority: number; run_at: Date | string }>(
          `SELECT item, priority, run_at FROM pgcoord.list_items WHERE list = $1 ORDER BY item`,
          [list],
        )
        .then((r) => r.rows);
    expect((await run(['lists', 'add', 's', 'hi', '--priority', '7'])).stdout).toBe('added 1\n');
    expect((await run(['lists', 'add', 's', 'lo', '--priority', '-3'])).code).toBe(0);
    expect((await run(['lists', 'add', 's', 'later', '--delay-ms', '3600000'])).code).toBe(0);
    expect(
      (await run(['lists', 'add', 's', 'at', '--run-at', '2031-01-02T03:04:05.006Z'])).code,
    ).toBe(0);
    const rows = await sched('s');
    expect(rows.map((r) => [r.item, r.priority])).toEqual([
      ['at', 0],
      ['hi', 7],
      ['later', 0],
      ['lo', -3],
    ]);
    expect(rows[0]!.run_at).toEqual(new Date('2031-01-02T03:04:05.006Z'));
    const claim = JSON.parse(
      (await run(['--json', 'lists', 'claim', 's', '--limit', '10', '--lease-ms', '60000'])).stdout,
    );
    expect(claim.claims.map((c: { item: string }) => c.item)).toEqual(['hi', 'lo']);
    expect((await run(['lists', 'import', 'si', '--priority', '4'], 'x\ny\n')).code).toBe(0);
    expect((await sched('si')).map((r) => r.priority)).toEqual([4, 4]);
    // Out of range (the list's check: exit 2), unreadable, or both times: usage errors.
    for (const args of [
      ['--priority', '40000'],
      ['--priority', '1.5'],
      ['--delay-ms', '-1'],
      ['--run-at', 'tomorrow'],
      ['--run-at', '2031-01-01T00:00:00Z', '--delay-ms', '5'],
    ]) {
      const r = await run(['lists', 'add', 'sbad', 'x', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
    }
    expect(await sched('sbad')).toEqual([]);
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
    // Interrupted, as the exit codes of docs/cli-and-service.md say (128 + SIGINT), like `tail -f`.
    expect(await listen.exited).toBe(130);
  });

  it('exits 143 when listen is stopped with SIGTERM', async () => {
    const listen = startCli(['--database-url', db.url, 'listen', 'cli-term']);
    await waitFor(() => listen.stderr().includes('listening on'), { timeoutMs: 30_000 });
    listen.child.kill('SIGTERM');
    expect(await listen.exited).toBe(143);
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
    expect(await watch.exited).toBe(130);
    // The throw-away group is gone.
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgcoord.change_groups WHERE group_name LIKE 'pgcoord-watch-%'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('refuses to watch a table that is not tracked, with exit 3, without --track too', async () => {
    for (const args of [
      ['watch', 'no_such_table'],
      ['watch', 'no_such_table', '--track'],
    ]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(3);
      expect(r.stderr, args.join(' ')).toMatch(/^pgcoord: .*no_such_table.*\n$/);
      expect(r.stderr).not.toMatch(/watching/);
    }
    // An existing table whose capture is not installed: the same, with the way out in the message.
    await db.pool.query('CREATE TABLE untracked_t (id int PRIMARY KEY)');
    const r = await run(['watch', 'untracked_t']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/public\.untracked_t.*--track/);
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgcoord.change_groups WHERE group_name LIKE 'pgcoord-watch-%'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('imports from a missing file with a one-line error and exit 2', async () => {
    const r = await run(['lists', 'import', 'L', '/nonexistent/items.txt']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^pgcoord: .*\/nonexistent\/items\.txt.*\n$/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect((await run(['lists', 'stats', 'L'])).stdout).toBe('L\t0\n');
  });

  it('treats a malformed --database-url or DATABASE_URL as a usage error (exit 2)', async () => {
    const r = await runCli(['--database-url', 'not a url', 'kv', 'get', 'k']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^pgcoord: --database-url: .*\[PGCOORD_VALIDATION\]\n$/);
    const env = { ...process.env, DATABASE_URL: 'http://example.com/x' };
    const fromEnv = await runCli(['lists', 'stats'], { env });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toMatch(/^pgcoord: DATABASE_URL: /);
    const serve = await runCli(['serve', '--port', '0', '--database-url', 'not a url']);
    expect(serve.code).toBe(2);
    // A socket folder is a valid connection string (node-postgres reads it as the host): tried.
    const socket = await runCli(['--database-url', '/nonexistent-socket-dir', 'kv', 'get', 'k']);
    expect(socket.code).not.toBe(2);
    expect(socket.stderr).toMatch(/\/nonexistent-socket-dir\/\.s\.PGSQL\.5432/);
  });

  it('prints its version with --version and -V', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      expect(r.code, flag).toBe(0);
      expect(r.stdout, flag).toBe(`${pkg.version}\n`);
    }
  });

  it('prints help on stderr and exits 2 for a command group without a subcommand', async () => {
    for (const args of [[], ['lists'], ['kv']]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr, args.join(' ')).toMatch(/^Usage: pgcoord/);
    }
    // Asking for help is not an error.
    const help = await runCli(['help', 'lists']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: pgcoord lists/);
  });

  it('serve --read-only prints the console URL, serves reads and refuses writes with 403', async () => {
    const serve = startCli(['--database-url', db.url, 'serve', '--port', '0', '--read-only']);
    try {
      const line = await waitFor(() => /^pgcoord serving .*$/m.exec(serve.stdout())?.[0], {
        timeoutMs: 30_000,
      });
      const base = /serving (http:\/\/\S+)/.exec(line)![1]!;
      expect(line).toBe(
        `pgcoord serving ${base} (console at ${base}/, OpenAPI at ${base}/openapi.json, read-only)`,
      );
      expect((await fetch(`${base}/v1/lists`)).status).toBe(200);
      const write = await fetch(`${base}/v1/lists/ro/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ items: ['x'] }),
      });
      expect(write.status).toBe(403);
      expect(((await write.json()) as { error: { code: string } }).error.code).toBe(
        'PGCOORD_READ_ONLY',
      );
    } finally {
      serve.child.kill('SIGINT');
      expect(await serve.exited).toBe(0);
    }
  });

  it('serve on a database of its own exits at once on a second SIGINT while stopping', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PGCOORD_LOG_LEVEL: 'info' };
    const serve = startCli(['--database-url', db.url, 'serve', '--port', '0'], { env });
    const blocker = await db.pool.connect();
    try {
      const base = await waitFor(() => /serving (http:\/\/\S+)/.exec(serve.stdout())?.[1], {
        timeoutMs: 30_000,
      });
      const put = (value: string) =>
        fetch(`${base}/v1/kv/held`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ value }),
        });
      expect((await put('a')).status).toBe(200);
      // A write of the service waits for a row lock this test holds: stopping cannot finish.
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM pgcoord.kv WHERE key = 'held' FOR UPDATE`);
      const blocked = put('b').catch(() => undefined);
      await waitFor(async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM pg_stat_activity
            WHERE application_name = 'pgcoord-serve' AND wait_event_type = 'Lock'`,
        );
        return rows.length > 0;
      });
      serve.child.kill('SIGINT');
      await waitFor(() => serve.stderr().includes('shutting down'), { timeoutMs: 10_000 });
      expect(serve.child.exitCode).toBeNull();
      serve.child.kill('SIGINT');
      // Exits while the lock is still held, that is, without waiting for the stuck write.
      await waitFor(() => serve.child.exitCode !== null, { timeoutMs: 15_000 });
      expect(await serve.exited).toBe(130);
      await blocked;
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
      if (serve.child.exitCode === null) serve.child.kill('SIGKILL');
      await serve.exited;
    }
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
