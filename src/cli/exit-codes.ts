import { PgcoordError } from '../core/index.js';

/**
 * Exit codes of the pgcoord command; scripts may rely on them.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success |
 * | 1 | failure: a database error or a bug (message on stderr) |
 * | 2 | usage: unknown command/option or invalid input; nothing was written |
 * | 3 | not found: the item, key or list asked for does not exist |
 * | 4 | conflict: compare-and-set mismatch, stale token, already held (a limit denied; a data folder owned by a running `serve`) |
 * | 5 | unavailable: the database cannot be reached (retry later) |
 * | 6 | timeout |
 * | 7 | unsupported: the engine lacks a needed feature |
 * | 130 | interrupted by SIGINT (Ctrl-C): how `listen` and `watch` end |
 * | 143 | terminated by SIGTERM |
 *
 * `serve` exits 0 once a signal has stopped it cleanly: a service's normal end (systemd and
 * container runtimes read 0 as success).
 */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  CONFLICT: 4,
  UNAVAILABLE: 5,
  TIMEOUT: 6,
  UNSUPPORTED: 7,
  INTERRUPTED: 130,
  TERMINATED: 143,
} as const;

/** The exit code for an error a command threw. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (!(err instanceof PgcoordError)) return EXIT.FAILURE;
  switch (err.code) {
    case 'PGCOORD_VALIDATION':
      return EXIT.USAGE;
    case 'PGCOORD_NOT_FOUND':
      return EXIT.NOT_FOUND;
    case 'PGCOORD_CONFLICT':
    case 'PGCOORD_STALE_TOKEN':
      return EXIT.CONFLICT;
    case 'PGCOORD_CONNECTION':
    case 'PGCOORD_CLOSED':
      return EXIT.UNAVAILABLE;
    case 'PGCOORD_TIMEOUT':
      return EXIT.TIMEOUT;
    case 'PGCOORD_UNSUPPORTED':
      return EXIT.UNSUPPORTED;
    default:
      return EXIT.FAILURE;
  }
}

/** An error of the command line itself, with the exit code to use. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.FAILURE,
  ) {
    super(message);
  }
}
