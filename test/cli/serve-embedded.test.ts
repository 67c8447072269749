// End to end on one data folder (one initdb for the file): `pgcoord serve` with no DATABASE_URL
// starts an embedded PostgreSQL (as root too), serves HTTP, stops cleanly on a signal however it
// was launched, keeps its data across restarts, refuses a second serve on the same folder, and
// its PostgreSQL does not outlive a serve killed with SIGKILL.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait-for.js';
import { isRunning, processTree, runCli, startCli, type CliProcess } from '../support/cli.js';

const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-serve-'));
// As root, PostgreSQL runs as another OS user, who must be able to enter this folder.
fs.chmodSync(parent, 0o755);
const dataDir = path.join(parent, '.pgcoord');
const running: CliProcess[] = [];
/** Every process a test saw in a serve's tree: none may be left behind, whatever happened. */
const seen = new Set<number>();

afterAll(async () => {
  // After a failure, processes may be left: kill them first (an orphan holding a launcher's
  // stdout would keep its 'close' from ever coming).
  const postmaster = postmasterPid();
  if (postmaster !== undefined) seen.add(postmaster);
  for (const pid of seen) {
    if (isRunning(pid)) process.kill(pid, 'SIGKILL');
  }
  for (const p of running) {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  fs.rmSync(parent, { recursive: true, force: true });
});

const serveEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, PGCOORD_LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  delete env.PGCOORD_TOKEN;
  return env;
};

function postmasterPid(): number | undefined {
  try {
    return Number(
      fs.readFileSync(path.join(dataDir, 'data/postmaster.pid'), 'utf8').split('\n')[0],
    );
  } catch {
    return undefined;
  }
}

/** The processes of a serve (its launcher, node, the supervisor, PostgreSQL), remembered. */
function treeOf(proc: CliProcess): number[] {
  const tree = processTree(proc.child.pid!);
  for (const pid of tree) seen.add(pid);
  return tree;
}

async function allGone(pids: number[]): Promise<void> {
  await waitFor(() => pids.every((pid) => !isRunning(pid)), {
    timeoutMs: 30_000,
    message: `processes ${pids.join(', ')} to exit (running: ${pids.filter(isRunning).join(', ')})`,
  });
}

async function startServe(
  via: 'node' | 'npx' = 'node',
): Promise<{ proc: CliProcess; base: string; databaseUrl: string }> {
  const proc = startCli(['serve', '--port', '0', '--data-dir', dataDir], {
    env: serveEnv(),
    cwd: parent,
    via,
  });
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

  it('refuses a second serve on the same folder, naming the first, and leaves it alone', async () => {
    const first = await startServe();
    const postmaster = postmasterPid()!;
    const servePid = first.proc.child.pid!;
    const options = { env: serveEnv(), cwd: parent, timeoutMs: 30_000 };
    const second = await runCli(['serve', '--port', '0', '--data-dir', dataDir], options);
    expect(second.code).toBe(4);
    expect(second.stderr).toContain(`pid ${servePid}`);
    expect(second.stderr).toContain(first.base);
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    // Its HTTP port taken, or a public --host without a token: refused before touching anything.
    const port = new URL(first.base).port;
    const samePort = await runCli(['serve', '--port', port, '--data-dir', dataDir], options);
    expect(samePort.code).toBe(4);
    const publicHost = await runCli(
      ['serve', '--port', '0', '--host', '0.0.0.0', '--data-dir', dataDir],
      options,
    );
    expect(publicHost.code).toBe(2);
    expect(publicHost.stderr).toMatch(/token/i);

    // The first serve and its database are untouched.
    expect(postmasterPid()).toBe(postmaster);
    expect((await fetch(`${first.base}/readyz`)).status).toBe(200);
    const added = await fetch(`${first.base}/iidy/v1/batch/lists/second`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'x\n',
    });
    expect(added.status).toBe(201);

    // SIGTERM to `node bin/pgcoord.js serve`: node, the supervisor and PostgreSQL all exit.
    const tree = treeOf(first.proc);
    expect(tree).toContain(postmaster);
    first.proc.child.kill('SIGTERM');
    expect(await first.proc.exited).toBe(0);
    await allGone(tree);
    expect(fs.existsSync(path.join(dataDir, 'owner.json'))).toBe(false);
  });

  it('stops node and PostgreSQL when the npx that launched serve gets SIGTERM', async () => {
    const viaNpx = await startServe('npx');
    expect((await fetch(`${viaNpx.base}/readyz`)).status).toBe(200);
    const tree = treeOf(viaNpx.proc);
    // npx, the shell npm runs the bin through, node, the supervisor, PostgreSQL and its children.
    expect(tree).toContain(postmasterPid());
    expect(tree.length).toBeGreaterThanOrEqual(5);
    viaNpx.proc.child.kill('SIGTERM');
    await allGone(tree);
    // A clean stop, not a crash: the data folder is released and PostgreSQL shut down cleanly.
    expect(fs.existsSync(path.join(dataDir, 'owner.json'))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'data/postmaster.pid'))).toBe(false);
    // npx runs the package's prepare (the whole build, the console's bundle included) before
    // serve starts: startServe waits up to 90 s for it, and the stop up to 30 s.
  }, 180_000);

  it('stops PostgreSQL when serve is killed with SIGKILL; the next serve starts', async () => {
    const killed = await startServe();
    const tree = treeOf(killed.proc);
    const postmaster = postmasterPid()!;
    expect(tree).toContain(postmaster);
    killed.proc.child.kill('SIGKILL');
    await killed.proc.exited;
    await allGone(tree);

    const next = await startServe();
    expect(next.databaseUrl).toBe(killed.databaseUrl);
    expect((await fetch(`${next.base}/readyz`)).status).toBe(200);
    const page = await fetch(`${next.base}/v1/lists/second/items`);
    expect(await page.json()).toEqual({ entries: [{ item: 'x', attempts: 0 }], last: 'x' });
    await stop(next.proc);
  });
});
