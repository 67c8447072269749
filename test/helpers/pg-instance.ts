// Private PostgreSQL instances for tests that need a server of their own: restarts, outages,
// replicas, failover. Built from the installed server binaries, run as the `postgres` OS user,
// on free loopback ports, with data under a temporary folder that destroy() removes.
// Never restart or stop the shared server on 5432: other test files run against it in parallel.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/cli/embedded-database.js';

/** The folder of the installed server binaries (pg_config, or the newest under /usr/lib/postgresql). */
export const bindir = (() => {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    const base = '/usr/lib/postgresql';
    const versions = fs.existsSync(base) ? fs.readdirSync(base).sort() : [];
    if (versions.length === 0) throw new Error('no PostgreSQL server binaries found (pg_config)');
    return path.join(base, versions[versions.length - 1]!, 'bin');
  }
})();

/** runuser, which lives in an sbin folder a minimal PATH (CI's may be one) leaves out. */
const runuser =
  ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => fs.existsSync(p)) ??
  'runuser';

/**
 * The command line that runs `cmd` as the postgres OS user when we are root (the server refuses
 * to run as root), or as ourselves otherwise.
 */
export function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? [runuser, ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

/** Runs a server binary as the postgres OS user. */
function runPg(binary: string, args: string[], options: { allowFail?: boolean } = {}): string {
  const [cmd, argv] = asPostgres(path.join(bindir, binary), args);
  const res = spawnSync(cmd, argv, { encoding: 'utf8', cwd: os.tmpdir() });
  if (res.status !== 0 && !options.allowFail) {
    throw new Error(
      `${binary} ${args.join(' ')} failed (${res.status}): ${res.error?.message ?? (res.stderr || res.stdout)}`,
    );
  }
  return res.stdout;
}

/** A TCP port on 127.0.0.1 that nothing listens on right now (the CLI's own, re-exported). */
export { freePort };

export interface PgInstance {
  port: number;
  dataDir: string;
  /** Connection string for `database` (default `postgres`) as user postgres. */
  url(database?: string): string;
  /** Whether the postmaster is running. */
  running(): boolean;
  /** Stops the server (`fast` closes connections cleanly; `immediate` is a crash-like stop). */
  stop(mode?: 'smart' | 'fast' | 'immediate'): void;
  /** Starts it again on the same port and data. */
  start(): void;
  restart(): void;
  /** Promotes a standby to primary (waits until it accepts writes). */
  promote(): void;
  /** Stops it and removes its data. Idempotent. */
  destroy(): void;
}

const live = new Set<PgInstance>();
process.once('exit', () => {
  for (const inst of live) inst.destroy();
});

export interface StartInstanceOptions {
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Make a streaming standby of this primary (pg_basebackup -R). */
  standbyOf?: PgInstance;
  /** Extra server settings (`-c name=value`). */
  settings?: Record<string, string | number>;
}

/** Initializes and starts a private PostgreSQL server (or a standby of one). */
export async function startInstance(options: StartInstanceOptions = {}): Promise<PgInstance> {
  const port = options.port ?? (await freePort());
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-inst-'));
  const dataDir = path.join(parent, 'data');
  const socketDir = path.join(parent, 'sock');
  fs.mkdirSync(socketDir);
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', parent]);
  fs.chmodSync(parent, 0o755);

  if (options.standbyOf) {
    const p = options.standbyOf;
    runPg('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(p.port),
      '-U',
      'postgres',
      '-D',
      dataDir,
      '-R',
      '-X',
      'stream',
      '-c',
      'fast',
    ]);
  } else {
    runPg('initdb', [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '-A',
      'trust',
      '--no-sync',
      '-E',
      'UTF8',
      '--locale',
      'C',
    ]);
    fs.appendFileSync(
      path.join(dataDir, 'pg_hba.conf'),
      '\nhost replication all 127.0.0.1/32 trust\n',
    );
  }
  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    port,
    unix_socket_directories: socketDir,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: 100,
    wal_level: 'replica',
    max_wal_senders: 10,
    hot_standby: 'on',
    shared_buffers: '32MB',
    ...options.settings,
  };
  const opts = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ');
  const logFile = path.join(parent, 'server.log');

  const inst: PgInstance = {
    port,
    dataDir,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    running: () =>
      runPg('pg_ctl', ['status', '-D', dataDir], { allowFail: true }).includes('server is running'),
    stop(mode = 'fast') {
      runPg('pg_ctl', ['stop', '-D', dataDir, '-m', mode, '-w', '-t', '60'], { allowFail: true });
    },
    start() {
      runPg('pg_ctl', ['start', '-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', opts]);
    },
    restart() {
      inst.stop('fast');
      inst.start();
    },
    promote() {
      runPg('pg_ctl', ['promote', '-D', dataDir, '-w', '-t', '60']);
    },
    destroy() {
      if (!live.has(inst)) return;
      live.delete(inst);
      runPg('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '30'], {
        allowFail: true,
      });
      fs.rmSync(parent, { recursive: true, force: true });
    },
  };
  live.add(inst);
  inst.start();
  return inst;
}
