// A real PgBouncer (the Debian package) for tests that must work through a connection pooler:
// its own config and auth file in a temporary folder, a free loopback port, in front of the
// server under test, started as the postgres OS user when we are root (PgBouncer refuses root).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serverConfig } from './db.js';
import { freePort } from './pg-instance.js';

export interface PgBouncerOptions {
  /** `transaction` (default) or `session`. */
  poolMode?: 'transaction' | 'session';
  /**
   * Server connections per database and user (default 3): fewer than a test's clients, so
   * transactions of different clients really share server connections.
   */
  poolSize?: number;
}

export interface PgBouncer {
  port: number;
  /** PgBouncer's version, e.g. `1.18.0`. */
  version: string;
  /** Connection string for `database` through PgBouncer (same user and password as the server). */
  url(database: string): string;
  /** Stops PgBouncer and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

/** Why PgBouncer cannot run here, or undefined when it can. */
export function pgbouncerUnavailable(): string | undefined {
  if (pgbouncerVersion() === undefined) {
    return 'the pgbouncer binary is not installed (Debian package pgbouncer; .ci/run installs it)';
  }
  if (process.getuid?.() === 0 && spawnSync('id', ['postgres']).status !== 0) {
    return 'running as root without a postgres OS user to run PgBouncer as';
  }
  return undefined;
}

/** The pgbouncer binary: on PATH, else in an sbin folder a minimal PATH (CI's may be one) leaves out. */
const binary =
  spawnSync('which', ['pgbouncer']).status === 0
    ? 'pgbouncer'
    : (['/usr/sbin/pgbouncer', '/usr/local/sbin/pgbouncer', '/sbin/pgbouncer'].find((p) =>
        fs.existsSync(p),
      ) ?? 'pgbouncer');

function pgbouncerVersion(): string | undefined {
  const res = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (res.status !== 0) return undefined;
  return /PgBouncer (\d+\.\d+(?:\.\d+)?)/.exec(res.stdout)?.[1];
}

function atLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Starts a PgBouncer in front of the server under test; resolves once it accepts connections. */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer> {
  const version = pgbouncerVersion();
  if (version === undefined) throw new Error(pgbouncerUnavailable());
  const server = serverConfig();
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-pgbouncer-'));
  const user = server.user ?? 'postgres';
  const password = server.password === undefined ? undefined : String(server.password);
  const quote = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
  const backend = [
    `host=${String(server.host ?? '127.0.0.1')}`,
    `port=${String(server.port ?? 5432)}`,
    ...(password === undefined ? [] : [`password=${quote(password)}`]),
  ].join(' ');
  const lines = [
    '[databases]',
    `* = ${backend}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    `pool_mode = ${options.poolMode ?? 'transaction'}`,
    `default_pool_size = ${options.poolSize ?? 3}`,
    'max_client_conn = 500',
    // node-postgres sends extra_float_digits; a pooler that refuses it refuses every client.
    'ignore_startup_parameters = extra_float_digits,options',
    'server_reset_query =',
    'log_connections = 0',
    'log_disconnections = 0',
  ];
  // From 1.21 on, PgBouncer can track protocol-level prepared statements itself (on by default
  // from 1.22). Turned off here, so the test sees what 1.18 (Debian 12's) and a default older
  // deployment do: statements outlive the transaction on a shared server connection.
  if (atLeast(version, 1, 21)) lines.push('max_prepared_statements = 0');
  fs.writeFileSync(path.join(dir, 'pgbouncer.ini'), lines.join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'userlist.txt'), `"${user}" ""\n`);
  const root = process.getuid?.() === 0;
  if (root) spawnSync('chown', ['-R', 'postgres:postgres', dir]);

  // `-u postgres` switches user inside the same process, so its pid is the one to signal.
  const args = [...(root ? ['-u', 'postgres'] : []), path.join(dir, 'pgbouncer.ini')];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(`listening on 127.0.0.1:${port}`)) done();
    };
    const onExit = (code: number | null) => {
      done(new Error(`pgbouncer exited (${code}) before listening:\n${output}`));
    };
    const timer = setTimeout(
      () => done(new Error(`pgbouncer did not listen within 10 s:\n${output}`)),
      10_000,
    );
    function done(err?: Error) {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.stderr!.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    }
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    live.delete(child);
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  // Keep draining its log so a chatty PgBouncer never blocks on a full pipe.
  child.stdout!.resume();
  child.stderr!.resume();

  const auth = password === undefined ? user : `${user}:${encodeURIComponent(password)}`;
  let stopped: Promise<void> | undefined;
  return {
    port,
    version,
    url: (database) => `postgres://${auth}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          // The immediate shutdown (SIGINT and, from 1.23, SIGTERM wait for clients to leave).
          child.kill(atLeast(version, 1, 23) ? 'SIGQUIT' : 'SIGTERM');
          await exited;
        }
        live.delete(child);
        fs.rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
