import { parentOf } from './process-info.js';

/** The signals that ask a long-running command (serve, listen, watch) to stop. */
export type StopSignal = 'SIGINT' | 'SIGTERM';

const SIGNAL_NUMBERS: Record<StopSignal, number> = { SIGINT: 2, SIGTERM: 15 };

/** The exit code of a command a signal stopped: 128 + its number, as shells report it. */
export function signalExitCode(signal: StopSignal): number {
  return 128 + SIGNAL_NUMBERS[signal];
}

/**
 * Calls `handler` on every SIGINT and SIGTERM, and once with SIGTERM when the npm process that
 * launched this one is gone (see {@link watchLauncher}). Returns a function that stops listening.
 */
export function onStopRequest(handler: (signal: StopSignal) => void): () => void {
  const onInt = () => handler('SIGINT');
  const onTerm = () => handler('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const stopWatching = watchLauncher(() => handler('SIGTERM'));
  return () => {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    stopWatching();
  };
}

/**
 * The first stop request, for a command that only has to end (listen, watch): a second request
 * exits at once, as an unhandled signal would, should cleaning up hang.
 */
export function nextStopRequest(): { stopped: Promise<StopSignal>; dispose: () => void } {
  let resolve!: (signal: StopSignal) => void;
  const stopped = new Promise<StopSignal>((r) => (resolve = r));
  let first: StopSignal | undefined;
  const dispose = onStopRequest((signal) => {
    if (first !== undefined) process.exit(signalExitCode(signal));
    first = signal;
    resolve(signal);
  });
  return { stopped, dispose };
}

/**
 * npm (`npx`, `npm exec`, `npm run`) runs a command through `sh -c`, and passes a SIGTERM it
 * receives to that shell only: dash dies without passing it on, leaving this process (and the
 * embedded PostgreSQL of `serve`) running, orphaned. So when npm launched us, our parent or its
 * parent going away is a stop request. Only then: a process whose parent ends (`nohup`, a shell
 * script that returns) must keep running. Polled (4 reads of /proc a second), as no portable
 * parent-death notification exists; off Linux only the parent is watched.
 */
function watchLauncher(onGone: () => void, intervalMs = 250): () => void {
  if (process.env.npm_lifecycle_event === undefined) return () => undefined;
  const parent = parentOf(process.pid) ?? process.ppid;
  const grandparent = parentOf(parent);
  const timer = setInterval(() => {
    const gone =
      (parentOf(process.pid) ?? process.ppid) !== parent ||
      (grandparent !== undefined && parentOf(parent) !== grandparent);
    if (gone) {
      clearInterval(timer);
      onGone();
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
