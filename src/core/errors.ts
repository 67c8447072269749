/**
 * Every error pgcoord throws is a {@link PgcoordError} with a stable string `code`. Callers branch
 * on the subclass (`instanceof ValidationError`) or on `code`; messages are for humans and may change.
 */

/** Stable error codes. Documented in the README, one row each. */
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
  | 'PGCOORD_CLOSED';

/** Base class of every error pgcoord throws. */
export class PgcoordError extends Error {
  /** Stable machine-readable code; see the README's error table. */
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

/** The database schema was migrated by a newer pgcoord than this one: upgrade the code. */
export class DatabaseNewerError extends PgcoordError {
  readonly databaseVersion: number;
  readonly codeVersion: number;

  constructor(schema: string, databaseVersion: number, codeVersion: number) {
    super(
      'PGCOORD_DATABASE_NEWER',
      `schema "${schema}" is at migration ${databaseVersion} but this pgcoord knows only up to ${codeVersion}: upgrade pgcoord before using this database`,
    );
    this.databaseVersion = databaseVersion;
    this.codeVersion = codeVersion;
  }
}

/** The object was stopped or closed and cannot serve this call. */
export class ClosedError extends PgcoordError {
  constructor(message: string) {
    super('PGCOORD_CLOSED', message);
  }
}

/** SQLSTATE classes and codes that mean "the connection, not the statement, is at fault". */
const CONNECTION_SQLSTATES = new Set([
  '57P01', // admin_shutdown (pg_terminate_backend, server stop)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '53300', // too_many_connections
  '53400', // configuration_limit_exceeded
  '25006', // read_only_sql_transaction: we reached a standby where a primary was wanted
]);

const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

const CONNECTION_MESSAGES = [
  /connection terminated/i,
  /terminating connection/i,
  /timeout exceeded when trying to connect/i,
  /connection timeout/i,
  /not queryable/i,
  /client was closed/i,
  /cannot use a pool after calling end/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
  /server closed the connection unexpectedly/i,
  /sorry, too many clients already/i,
  /query read timeout/i,
];

interface PgErrorFields {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
  constraint?: unknown;
  table?: unknown;
  schema?: unknown;
  errno?: unknown;
}

/** Whether a SQLSTATE marks a connectivity problem (class 08, shutdown, too many connections). */
export function isConnectionSqlState(sqlState: string | undefined): boolean {
  if (sqlState === undefined) return false;
  // 08P01 (protocol_violation) is in class 08 but means a client bug, not a broken link.
  if (sqlState === '08P01') return false;
  return sqlState.startsWith('08') || CONNECTION_SQLSTATES.has(sqlState);
}

/**
 * Turns anything thrown by `pg`, the network or pgcoord into a {@link PgcoordError}:
 * connectivity problems become retryable {@link ConnectionError}s, server refusals
 * {@link DatabaseError}s with their SQLSTATE; pgcoord errors pass through unchanged.
 */
export function coerceError(err: unknown): PgcoordError {
  if (err instanceof PgcoordError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as PgErrorFields;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const code = typeof e.code === 'string' ? e.code : undefined;
  const sqlState = code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;

  if (
    isConnectionSqlState(sqlState) ||
    (code !== undefined && CONNECTION_ERRNOS.has(code)) ||
    (sqlState === undefined && CONNECTION_MESSAGES.some((re) => re.test(message)))
  ) {
    return new ConnectionError(message, { cause: err, sqlState });
  }
  return new DatabaseError(message, {
    cause: err,
    sqlState,
    detail: typeof e.detail === 'string' ? e.detail : undefined,
    constraint: typeof e.constraint === 'string' ? e.constraint : undefined,
    table: typeof e.table === 'string' ? e.table : undefined,
    schema: typeof e.schema === 'string' ? e.schema : undefined,
    // serialization_failure and deadlock_detected succeed when the transaction is retried.
    retryable: sqlState === '40001' || sqlState === '40P01',
  });
}
