// What the README tells users: a pool from createPool() survives the server dropping an idle
// connection; a bare pg.Pool without an 'error' listener takes the process down. Each pool runs in
// its own process (a crash must not take the test worker with it), and the test terminates that
// pool's idle backend with pg_terminate_backend.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adminQuery, useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import { repoRoot } from '../support/cli.js';

const db = useTestDatabase();
fs.mkdirSync(path.join(repoRoot, '.tmp'), { recursive: true }); // git-ignored
const dir = fs.mkdtempSync(path.join(repoRoot, '.tmp', 'create-pool-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const source = JSON.stringify(path.join(repoRoot, 'src/index.ts'));

/** Runs `code` (an ES module), terminates the backend whose pid it prints, returns the outcome. */
async function dropIdleConnectionOf(
  code: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = path.join(dir, `pool-${Math.random().toString(36).slice(2)}.ts`);
  fs.writeFileSync(file, code);
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: repoRoot,
    env: { ...process.env, DATABASE_URL: db.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    const pid = await waitFor(() => /^backend (\d+)$/m.exec(stdout)?.[1], {
      timeoutMs: 30_000,
      message: 'the child to print its backend pid',
    });
    await adminQuery('SELECT pg_terminate_backend($1::int)', [Number(pid)]);
    return { code: await exited, stdout, stderr };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

describe('a pool whose idle connection the server drops', () => {
  it('from createPool: reports the error to its callback and keeps working', async () => {
    const r = await dropIdleConnectionOf(`
import { createPool } from ${source};
let lost!: (err: Error) => void;
const dropped = new Promise<Error>((resolve) => (lost = resolve));
const pool = createPool({ connectionString: process.env.DATABASE_URL, max: 1 }, lost);
console.log('backend', (await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
console.log('lost:', (await dropped).message);
console.log('after:', (await pool.query('SELECT 1 AS one')).rows[0].one);
await pool.end();
`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^lost: terminating connection/m);
    expect(r.stdout).toMatch(/^after: 1$/m);
  });

  it('a bare pg.Pool without an error listener ends the process', async () => {
    const r = await dropIdleConnectionOf(`
import pg from 'pg';
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1, idleTimeoutMillis: 0 });
console.log('backend', (await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/terminating connection/);
  });
});
