import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConflictError } from '../core/index.js';
import { startTimeOf } from './process-info.js';

/** Who holds the folder of an embedded PostgreSQL: `<dir>/owner.json`. */
export interface FolderOwner {
  pid: number;
  /** That process's start time ({@link startTimeOf}): with the pid, one process, never a reused pid. */
  started: string;
  host: string;
  /** The HTTP service's base URL, once `serve` listens. */
  service?: string;
  /** Pid of the postmaster this owner started, once it accepts connections. */
  databasePid?: number;
}

const LOCK_FILE = 'owner.json';

/**
 * One live process at a time owns a folder of the embedded PostgreSQL: it alone may start, stop
 * or take over the server there. The lock is a file naming the owner by pid and process start
 * time, created atomically (a complete file linked into place, which fails if one exists); a file
 * whose owner no longer runs is stale and is taken over. File locks (flock) would be released by
 * the kernel, but Node has none.
 */
export class FolderLock {
  private constructor(
    /** Path of the lock file. */
    readonly file: string,
    private record: FolderOwner,
    /** The dead owner this lock was taken over from, if any. */
    readonly previous: FolderOwner | undefined,
  ) {}

  /**
   * Takes the folder for this process, or throws a `ConflictError` naming the live owner (its
   * pid and, once it serves, its URL). The folder must exist.
   */
  static acquire(dir: string): FolderLock {
    const file = path.join(dir, LOCK_FILE);
    const mine: FolderOwner = {
      pid: process.pid,
      started: startTimeOf(process.pid) ?? 'unknown',
      host: os.hostname(),
    };
    let previous: FolderOwner | undefined;
    for (let attempt = 0; attempt < 10; attempt++) {
      if (createExclusive(file, mine)) return new FolderLock(file, mine, previous);
      const text = readText(file);
      if (text === undefined) continue; // Released meanwhile.
      const owner = parseOwner(text);
      if (owner !== undefined && isOwnerAlive(owner)) {
        throw new ConflictError(busyMessage(dir, file, owner));
      }
      // The owner is gone: remove its file, unless another start took it over meanwhile. Moved
      // aside first and compared, so a live lock written in between is never deleted.
      const aside = `${file}.${process.pid}.stale`;
      try {
        fs.renameSync(file, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      if (readText(aside) === text) {
        previous = owner ?? previous;
      } else {
        // Another start's fresh lock: put it back and look again.
        try {
          fs.linkSync(aside, file);
        } catch {
          // A third start holds the name now; it will be seen on the next round.
        }
      }
      fs.rmSync(aside, { force: true });
    }
    throw new ConflictError(`${file} keeps changing (other starts on this folder?); try again`);
  }

  /** Adds what others should know about this owner (its URL, its server's pid). */
  update(fields: Pick<FolderOwner, 'service' | 'databasePid'>): void {
    if (!this.holds()) return;
    this.record = { ...this.record, ...fields };
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(this.record, null, 2) + '\n', { mode: 0o644 });
    fs.renameSync(tmp, this.file);
  }

  /** Gives the folder up (removes the file if it still names this process). Idempotent. */
  release(): void {
    if (this.holds()) fs.rmSync(this.file, { force: true });
  }

  private holds(): boolean {
    const owner = parseOwner(readText(this.file) ?? '');
    return owner?.pid === this.record.pid && owner.started === this.record.started;
  }
}

/** Whether the process a lock names still runs (another host's cannot be checked: assumed so). */
export function isOwnerAlive(owner: FolderOwner): boolean {
  if (owner.host !== os.hostname()) return true;
  const started = startTimeOf(owner.pid);
  return started !== undefined && (started === owner.started || owner.started === 'unknown');
}

function busyMessage(dir: string, file: string, owner: FolderOwner): string {
  const where = owner.service ? `serving ${owner.service}` : 'still starting';
  const gone =
    owner.host !== os.hostname()
      ? `; it runs on host ${owner.host}: if it is gone, delete ${file}`
      : '';
  return (
    `another pgcoord (pid ${owner.pid}) owns the embedded PostgreSQL in ${dir}, ${where}${gone}. ` +
    `Stop it first, use its database (the URL is in ${path.join(dir, 'database-url')}), or choose another --data-dir`
  );
}

/** Creates `file` holding `owner`, complete, unless it exists (then returns false). */
function createExclusive(file: string, owner: FolderOwner): boolean {
  const content = JSON.stringify(owner, null, 2) + '\n';
  const tmp = `${file}.${process.pid}.new`;
  fs.writeFileSync(tmp, content, { mode: 0o644 });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    // No hard links on this file system: exclusive create (a reader may see it half-written).
    try {
      fs.writeFileSync(file, content, { flag: 'wx', mode: 0o644 });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function parseOwner(text: string): FolderOwner | undefined {
  try {
    const o = JSON.parse(text) as Partial<FolderOwner>;
    if (
      Number.isInteger(o.pid) &&
      typeof o.started === 'string' &&
      typeof o.host === 'string' &&
      (o.service === undefined || typeof o.service === 'string') &&
      (o.databasePid === undefined || Number.isInteger(o.databasePid))
    ) {
      return o as FolderOwner;
    }
  } catch {
    // Not JSON: junk, treated as a dead owner's.
  }
  return undefined;
}
