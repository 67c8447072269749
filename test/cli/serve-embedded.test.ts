// End to end, once: `pgcoord serve` with no DATABASE_URL starts an embedded PostgreSQL (as root
// too), serves HTTP, stops cleanly on SIGINT, and finds its data again on the next start.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait-for.js';
import { startCli, type CliProcess } from '../support/cli.js';

const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-serve-'));
// As root, PostgreSQL runs as another OS user, who must be able to enter this folder.
fs.chmodSync(parent, 0o755);
const dataDir = path.join(parent, '.pgcoord');
const running: CliProcess[] = [];

afterAll(async () => {
  for (const p of running) {
    if (p.child.exitCode === null) p.child.kill('SIGINT');
    await p.exited;
  }
  fs.rmSync(parent, { recursive: true, force: true });
});

async function startServe(): Promise<{ proc: CliProcess; base: string; databaseUrl: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, PGCOORD_LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  const proc = startCli(['serve', '--port', '0', '--data-dir', dataDir], { env, cwd: parent });
  running.push(proc);
  const out = await waitFor(
    () => {
      if (proc.child.exitCode !== null) throw new Error(`serve exited: ${proc.stderr()}`);
      return /DATABASE_URL=\S+/.test(proc.stdout()) ? proc.stdout() : undefined;
    },
    { timeoutMs: 90_000, message: 'serve to print its URLs' },
  );
  const base = /serving (http:\/\/\S+)/.exec(out)![1]!;
  const databaseUrl = /DATABASE_URL=(\S+)/.exec(out)![1]!;
  return { proc, base, databaseUrl };
}

async function stop(proc: CliProcess): Promise<void> {
  proc.child.kill('SIGINT');
  expect(await proc.exited).toBe(0);
}

describe('pgcoord serve on the embedded PostgreSQL', () => {
  it('starts, serves, stops on SIGINT, and keeps its data across restarts', async () => {
    const first = await startServe();
    expect(first.base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(first.databaseUrl).toMatch(/^postgres:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/postgres$/);
    expect((await fetch(`${first.base}/readyz`)).status).toBe(200);
    expect(fs.readFileSync(path.join(dataDir, 'database-url'), 'utf8').trim()).toBe(
      first.databaseUrl,
    );
    expect(fs.statSync(path.join(dataDir, 'database-url')).mode & 0o077).toBe(0);

    // Another process (a worker) uses the printed URL; the schema was migrated.
    const client = new pg.Client({ connectionString: first.databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query(
        `SELECT to_regclass('pgcoord.migrations') IS NOT NULL AS migrated`,
      );
      expect(rows[0].migrated).toBe(true);
    } finally {
      await client.end();
    }
    const added = await fetch(`${first.base}/iidy/v1/batch/lists/e2e`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'one\ntwo/with/slashes\nthree\n',
    });
    expect(added.status).toBe(201);
    expect(await added.text()).toBe('ADDED 3\n');
    const pid = Number(
      fs.readFileSync(path.join(dataDir, 'data/postmaster.pid'), 'utf8').split('\n')[0],
    );
    await stop(first.proc);
    // Both stopped: the HTTP port is closed and the postmaster is gone.
    await expect(fetch(`${first.base}/healthz`)).rejects.toThrow();
    expect(() => process.kill(pid, 0)).toThrow();
    expect(fs.existsSync(path.join(dataDir, 'data/postmaster.pid'))).toBe(false);

    const second = await startServe();
    expect(second.databaseUrl).toBe(first.databaseUrl);
    const page = await fetch(`${second.base}/v1/lists/e2e/items`);
    expect(await page.json()).toEqual({
      entries: [
        { item: 'one', attempts: 0 },
        { item: 'three', attempts: 0 },
        { item: 'two/with/slashes', attempts: 0 },
      ],
      last: 'two/with/slashes',
    });
    await stop(second.proc);
  });
});
