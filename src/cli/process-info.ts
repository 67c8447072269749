import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

// What the CLI needs to know about other processes by pid: whether one runs, its parent, and
// when it started (with the pid, that names one process: a pid is reused, a start time is not).

/** Fields of /proc/<pid>/stat from the state on (field 3), or undefined off Linux or when gone. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

const hasProc = fs.existsSync('/proc/self/stat');

/** Whether a process runs (a zombie, dead but not yet reaped, does not). */
export function isRunning(pid: number): boolean {
  if (hasProc) {
    const state = procStat(pid)?.[0];
    return state !== undefined && state !== 'Z' && state !== 'X';
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The parent pid of a running process, from /proc (Linux); undefined when unknown or gone. */
export function parentOf(pid: number): number | undefined {
  const fields = procStat(pid);
  if (fields === undefined || fields[0] === 'Z' || fields[0] === 'X') return undefined;
  const ppid = Number(fields[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

let bootId: string | undefined;

/**
 * When a running process started, as an opaque string that differs for any other process that
 * had or will have the same pid; undefined when it does not run. Linux: boot id and start time in
 * clock ticks since boot (/proc); elsewhere `ps -o lstart=` (to the second); `'unknown'` where
 * neither exists, so that only the pid is compared.
 */
export function startTimeOf(pid: number): string | undefined {
  if (hasProc) {
    const fields = procStat(pid);
    if (fields === undefined || fields[0] === 'Z' || fields[0] === 'X') return undefined;
    bootId ??= readBootId();
    // Field 22 of stat; fields[] starts at field 3.
    return `${bootId}:${fields[19]}`;
  }
  const ps = spawnSync('ps', ['-o', 'lstart=', '-p', String(pid)], { encoding: 'utf8' });
  if (ps.error === undefined)
    return ps.status === 0 && ps.stdout.trim() ? ps.stdout.trim() : undefined;
  return isRunning(pid) ? 'unknown' : undefined;
}

function readBootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'boot';
  }
}
