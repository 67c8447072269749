import { isRetryableErrno, isSqlState, retryReason } from './retryable.js';

/**
 * Every error pgcoord throws is a {@link PgcoordError} with a stable string `code`. Callers branch
 * on the subclass (`instanceof ValidationError`) or on `code`; messages are for humans and may change.
 */

/** Stable error codes. Documented in docs/cli-and-service.md (Errors), one row each. */
export type ErrorCode =
  | 'PGCOORD_VALIDATION'
  | 'PGCOORD_CONNECTION'
  | 'PGCOORD_DATABASE'
  | 'PGCOORD_NOT_FOUND'
  | 'PGCOORD_CONFLICT'
  | 'PGCOORD_STALE_TOKEN'
  | 'PGCOORD_TIMEOUT'
  | 'PGCOORD_UNSUPPORTED'
  | 'PGCOORD_MIGRATION'
  | 'PGCOORD_DATABASE_NEWER'
  | 'PGCOORD_CLOSED'
  | 'PGCOORD_INTERNAL'
  // Codes only the HTTP service answers with (no class of their own: HttpError carries them).
  | 'PGCOORD_BAD_REQUEST'
  | 'PGCOORD_UNAUTHORIZED'
  | 'PGCOORD_READ_ONLY'
  | 'PGCOORD_NO_ROUTE'
  | 'PGCOORD_PRECONDITION_FAILED'
  | 'PGCOORD_BODY_TOO_LARGE'
  | 'PGCOORD_METHOD_NOT_ALLOWED'
  | 'PGCOORD_URI_TOO_LONG';

/** Base class of every error pgcoord throws. */
export class PgcoordError extends Error {
  /** Stable machine-readable code; see the error table of docs/cli-and-service.md. */
  readonly code: ErrorCode;
  /** Whether retrying the same call later may succeed (connectivity, timeouts). */
  readonly retryable: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryable?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options?.retryable ?? false;
  }
}

/** A bad argument, refused before any SQL ran: nothing was written. */
export class ValidationError extends PgcoordError {
  /** The argument or option at fault, e.g. `items[3]` or `options.leaseMs`. */
  readonly argument: string;

  constructor(argument: string, message: string) {
    super('PGCOORD_VALIDATION', `${argument}: ${message}`);
    this.argument = argument;
  }
}

/** The database could not be reached or the connection broke. Retryable. */
export class ConnectionError extends PgcoordError {
  /** SQLSTATE when the server sent one (e.g. `57P01` admin shutdown, `53300` too many connections). */
  readonly sqlState: string | undefined;

  constructor(message: string, options?: { cause?: unknown; sqlState?: string }) {
    super('PGCOORD_CONNECTION', message, { cause: options?.cause, retryable: true });
    this.sqlState = options?.sqlState;
  }
}

/** The server refused a statement. Keeps SQLSTATE, detail and constraint. */
export class DatabaseError extends PgcoordError {
  readonly sqlState: string | undefined;
  readonly detail: string | undefined;
  readonly constraint: string | undefined;
  readonly table: string | undefined;
  readonly schema: string | undefined;

  constructor(
    message: string,
    fields: {
      cause?: unknown;
      sqlState?: string;
      detail?: string;
      constraint?: string;
      table?: string;
      schema?: string;
      retryable?: boolean;
    } = {},
  ) {
    super('PGCOORD_DATABASE', message, { cause: fields.cause, retryable: fields.retryable });
    this.sqlState = fields.sqlState;
    this.detail = fields.detail;
    this.constraint = fields.constraint;
    this.table = fields.table;
    this.schema = fields.schema;
  }
}

/** A named thing that must exist does not (where absence is not a normal answer). */
export class NotFoundError extends PgcoordError {
  constructor(message: string) {
    super('PGCOORD_NOT_FOUND', message);
  }
}

/** A write lost a race that the caller must resolve (e.g. an insert of an existing key). */
export class ConflictError extends PgcoordError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PGCOORD_CONFLICT', message, options);
  }
}

/** A claim or lease token is no longer the current one: its holder lost it. Never applied. */
export class StaleTokenError extends PgcoordError {
  constructor(message: string) {
    super('PGCOORD_STALE_TOKEN', message);
  }
}

/** A bounded wait ran out. Retryable. */
export class TimeoutError extends PgcoordError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PGCOORD_TIMEOUT', message, { cause: options?.cause, retryable: true });
  }
}

/** The engine lacks a feature this block needs (e.g. LISTEN/NOTIFY on Picodata). */
export class UnsupportedError extends PgcoordError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PGCOORD_UNSUPPORTED', message, options);
  }
}

/** A migration could not be applied. */
export class MigrationError extends PgcoordError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PGCOORD_MIGRATION', message, options);
  }
}

/**
 * The database schema was migrated by a newer pgcoord, with migrations marked breaking for this
 * one: upgrade the code.
 */
export class DatabaseNewerError extends PgcoordError {
  /** The schema's newest migration. */
  readonly databaseVersion: number;
  /** The newest migration this code knows. */
  readonly codeVersion: number;
  /** The migrations past `codeVersion` marked breaking (all of them when the database does not say). */
  readonly breakingMigrations: readonly number[];

  constructor(
    schema: string,
    databaseVersion: number,
    codeVersion: number,
    breakingMigrations: readonly number[] = [],
  ) {
    const which =
      breakingMigrations.length === 0
        ? ''
        : ` (breaking: ${breakingMigrations.map((id) => String(id).padStart(4, '0')).join(', ')})`;
    super(
      'PGCOORD_DATABASE_NEWER',
      `schema "${schema}" is at migration ${databaseVersion}${which} but this pgcoord knows only up to ${codeVersion}: upgrade pgcoord before using this database`,
    );
    this.databaseVersion = databaseVersion;
    this.codeVersion = codeVersion;
    this.breakingMigrations = Object.freeze([...breakingMigrations]);
  }
}

/** The object was stopped or closed and cannot serve this call. */
export class ClosedError extends PgcoordError {
  constructor(message: string) {
    super('PGCOORD_CLOSED', message);
  }
}

/**
 * A fault of pgcoord itself (or of code it called) rather than of the database or the input:
 * something was thrown that is neither a server's answer nor a broken link. Not retryable.
 */
export class InternalError extends PgcoordError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PGCOORD_INTERNAL', message, options);
  }
}

interface PgErrorFields {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
  constraint?: unknown;
  table?: unknown;
  schema?: unknown;
  syscall?: unknown;
}

/** Whether a SQLSTATE marks a connectivity problem (class 08, shutdown, too many connections). */
export function isConnectionSqlState(sqlState: string | undefined): boolean {
  return sqlState !== undefined && retryReason({ sqlState }) === 'connection';
}

/**
 * Turns anything thrown by `pg`, the network or pgcoord into a {@link PgcoordError}, setting
 * `retryable` from the one table of retryable failures (src/core/retryable.ts): connectivity
 * problems become retryable {@link ConnectionError}s, server refusals {@link DatabaseError}s with
 * their SQLSTATE (retryable for serialization failures and deadlocks), anything else an
 * {@link InternalError}; pgcoord errors pass through unchanged.
 */
export function coerceError(err: unknown): PgcoordError {
  if (err instanceof PgcoordError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as PgErrorFields;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const code = typeof e.code === 'string' ? e.code : undefined;
  // EPIPE has the shape of a SQLSTATE too: a Node.js system error (it names its syscall) or a
  // network errno of the table is never read as one.
  const sqlState =
    isSqlState(code) && e.syscall === undefined && !isRetryableErrno(code) ? code : undefined;
  const reason = retryReason({
    sqlState,
    errno: sqlState === undefined ? code : undefined,
    message: sqlState === undefined ? message : undefined,
  });
  if (reason === 'connection') return new ConnectionError(message, { cause: err, sqlState });
  if (sqlState === undefined) return new InternalError(message, { cause: err });
  return new DatabaseError(message, {
    cause: err,
    sqlState,
    detail: typeof e.detail === 'string' ? e.detail : undefined,
    constraint: typeof e.constraint === 'string' ? e.constraint : undefined,
    table: typeof e.table === 'string' ? e.table : undefined,
    schema: typeof e.schema === 'string' ? e.schema : undefined,
    retryable: reason === 'conflict',
  });
}
