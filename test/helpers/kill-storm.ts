import { spawn } from 'node:child_process';
import pg from 'pg';
import { serverConfig } from './db.js';

/** What a storm did. */
export interface StormResult {
  /** Rounds of pg_terminate_backend run. */
  rounds: number;
  /** Backends terminated over all rounds. */
  killed: number;
}

/**
 * Terminates every backend of `database` (but its own) again and again, 5 to 20 ms apart (or
 * `everyMs` apart), for at most `rounds` rounds and `maxMs` milliseconds, or until `until()` says
 * so; with `applicationName`, only the backends whose application_name is that. The gap between
 * rounds is the storm's cadence, not a wait for anything.
 */
export async function killStorm(
  database: string,
  options: {
    rounds: number;
    maxMs: number;
    until?: () => boolean;
    everyMs?: number;
    applicationName?: string;
  },
): Promise<StormResult> {
  const admin = new pg.Client({ ...serverConfig(), database: 'postgres' });
  await admin.connect();
  const result: StormResult = { rounds: 0, killed: 0 };
  const begin = Date.now();
  const end = begin + options.maxMs;
  try {
    while (result.rounds < options.rounds && Date.now() < end && !options.until?.()) {
      const { rows } = await admin.query<{ n: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n
         FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
          AND ($2::text IS NULL OR application_name = $2::text)`,
        [database, options.applicationName ?? null],
      );
      result.rounds++;
      result.killed += rows[0]!.n;
      // everyMs: rounds start on a fixed beat, whatever each took.
      const gap =
        options.everyMs === undefined
          ? 5 + Math.floor(Math.random() * 16)
          : Math.max(0, begin + result.rounds * options.everyMs - Date.now());
      await new Promise((r) => setTimeout(r, gap));
    }
  } finally {
    await admin.end();
  }
  return result;
}

/** A child process run under a kill storm, and how it ended. */
export interface StormChild {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The JSON summary it printed last, if any. */
  summary: Record<string, unknown> | undefined;
  stdout: string;
  stderr: string;
  storm: StormResult;
}

/**
 * Runs `script` (with tsx) under a kill storm on `database`: the child prints `ready` once its
 * work is under way; the storm runs; then the parent writes `calm` on the child's stdin, and the
 * child must show it recovered, print a JSON summary as its last line and exit by itself. A child
 * that crashes ends the storm at once; one that does not exit within `exitTimeoutMs` after the
 * storm is SIGKILLed (and reported with that signal).
 */
export async function runUnderStorm(
  script: string,
  args: string[],
  database: string,
  options: { rounds: number; maxMs: number; readyTimeoutMs?: number; exitTimeoutMs?: number },
): Promise<StormChild> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // A child that died early closes its stdin: writing "calm" must not fail the parent.
  child.stdin.on('error', () => undefined);
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  const ready = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), options.readyTimeoutMs ?? 30_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/^ready$/m.test(stdout)) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  let storm: StormResult = { rounds: 0, killed: 0 };
  if (await ready) {
    storm = await killStorm(database, { ...options, until: () => gone });
  }
  child.stdin.end('calm\n');
  const timer = setTimeout(() => child.kill('SIGKILL'), options.exitTimeoutMs ?? 30_000);
  const { code, signal } = await exited;
  clearTimeout(timer);
  const last = stdout.trim().split('\n').pop() ?? '';
  let summary: Record<string, unknown> | undefined;
  try {
    summary = JSON.parse(last) as Record<string, unknown>;
  } catch {
    summary = undefined;
  }
  return { code, signal, summary, stdout, stderr, storm };
}
