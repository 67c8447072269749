import { spawn, type ChildProcess } from 'node:child_process';

/** How to run the server under {@link spawnSupervised}. */
export interface SupervisedCommand {
  command: string;
  args: string[];
  cwd: string;
  /** Environment of the supervisor and the server. */
  env: NodeJS.ProcessEnv;
  /** OS user and group of the server (the supervisor runs as this process's user). */
  uid?: number;
  gid?: number;
  /** File descriptor for the server's and the supervisor's output (a log file). */
  logFd: number;
  /** After the owner died: wait this long for a fast shutdown before an immediate one, in ms. */
  graceMs: number;
}

// The supervisor, run by `node -e`: plain CommonJS, no imports of ours, so it runs the same from
// the sources, from dist/ and from an installed package. Its stdin is a pipe whose other end only
// the owner holds: end-of-file means the owner is gone, however it died.
const SUPERVISOR = `'use strict';
const { spawn } = require('node:child_process');
const c = JSON.parse(process.argv[1]);
process.title = 'pgcoord: supervisor of PostgreSQL for pid ' + c.owner;
const log = (m) => process.stderr.write(new Date().toISOString() + ' pgcoord supervisor: ' + m + '\\n');
const server = spawn(c.command, c.args, { cwd: c.cwd, uid: c.uid, gid: c.gid, stdio: ['ignore', 'inherit', 'inherit'] });
let stopping = false;
const stop = (why) => {
  if (stopping) return;
  stopping = true;
  log(why + ': fast shutdown of PostgreSQL (pid ' + server.pid + ')');
  server.kill('SIGINT');
  setTimeout(() => { log('still running: immediate shutdown'); server.kill('SIGQUIT'); }, c.graceMs).unref();
};
process.stdin.on('end', () => stop('owner (pid ' + c.owner + ') gone'));
process.stdin.on('error', () => stop('owner (pid ' + c.owner + ') gone'));
process.stdin.resume();
process.on('SIGINT', () => stop('asked to stop'));
process.on('SIGTERM', () => stop('asked to stop'));
process.on('SIGQUIT', () => server.kill('SIGQUIT'));
server.on('error', (err) => { log(err.message); process.exit(1); });
server.on('exit', (code) => process.exit(code === null ? 1 : code));
`;

/**
 * Starts a server (the embedded PostgreSQL) under a small supervisor process that stops it when
 * this process dies, however it dies. PostgreSQL does not watch its parent, and Node cannot ask
 * the kernel to signal a child when the parent dies (PR_SET_PDEATHSIG needs native code, and is
 * Linux only); a process group does not help either, as a SIGKILL reaches the killed process
 * alone. A pipe does: the kernel closes this process's end when it exits, and the supervisor,
 * reading the other end as its stdin, sees end-of-file at once (no polling, no pid that could be
 * reused). It then asks for a fast shutdown, and an immediate one after `graceMs`.
 *
 * The returned child is the supervisor, in its own process group (a terminal's Ctrl-C reaches
 * this process only, which stops HTTP first and the database last). Signal it to stop the
 * server: SIGINT or SIGTERM for a fast shutdown, SIGQUIT for an immediate one; it exits with the
 * server's exit code once the server has exited.
 */
export function spawnSupervised(cmd: SupervisedCommand): ChildProcess {
  const config = {
    command: cmd.command,
    args: cmd.args,
    cwd: cmd.cwd,
    uid: cmd.uid,
    gid: cmd.gid,
    graceMs: cmd.graceMs,
    owner: process.pid,
  };
  const child = spawn(process.execPath, ['-e', SUPERVISOR, JSON.stringify(config)], {
    cwd: cmd.cwd,
    env: cmd.env,
    stdio: ['pipe', cmd.logFd, cmd.logFd],
    detached: true,
  });
  // The pipe is only ever closed, never written: an error on it (the supervisor died) is moot.
  child.stdin?.on('error', () => undefined);
  return child;
}
