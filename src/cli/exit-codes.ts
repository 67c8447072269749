import { PgcoordError, type ErrorCode } from '../core/index.js';

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

/**
 * The exit code of each pgcoord error code: a Record, so a new code cannot fall through to a
 * default without a decision here (the compiler asks for it).
 */
export const EXIT_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  PGCOORD_VALIDATION: EXIT.USAGE,
  PGCOORD_NOT_FOUND: EXIT.NOT_FOUND,
  PGCOORD_CONFLICT: EXIT.CONFLICT,
  PGCOORD_STALE_TOKEN: EXIT.CONFLICT,
  PGCOORD_CONNECTION: EXIT.UNAVAILABLE,
  PGCOORD_CLOSED: EXIT.UNAVAILABLE,
  PGCOORD_TIMEOUT: EXIT.TIMEOUT,
  PGCOORD_UNSUPPORTED: EXIT.UNSUPPORTED,
  PGCOORD_DATABASE: EXIT.FAILURE,
  PGCOORD_MIGRATION: EXIT.FAILURE,
  PGCOORD_DATABASE_NEWER: EXIT.FAILURE,
  PGCOORD_INTERNAL: EXIT.FAILURE,
  // HTTP-only codes: the CLI does not meet them; mapped like their HTTP status would suggest.
  PGCOORD_BAD_REQUEST: EXIT.USAGE,
  PGCOORD_UNAUTHORIZED: EXIT.FAILURE,
  PGCOORD_READ_ONLY: EXIT.FAILURE,
  PGCOORD_NO_ROUTE: EXIT.NOT_FOUND,
  PGCOORD_PRECONDITION_FAILED: EXIT.CONFLICT,
  PGCOORD_BODY_TOO_LARGE: EXIT.USAGE,
  PGCOORD_METHOD_NOT_ALLOWED: EXIT.USAGE,
  PGCOORD_URI_TOO_LONG: EXIT.USAGE,
};

/** The exit code for an error a command threw. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (!(err instanceof PgcoordError)) return EXIT.FAILURE;
  return EXIT_BY_CODE[err.code] ?? EXIT.FAILURE;
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
