/**
 * The one table of failures that may succeed when tried again. {@link coerceError} reads it to
 * set `retryable` on every error pgcoord throws, and every retry (statements, reconnects,
 * migrations) reads `retryable`, never a SQLSTATE of its own.
 */

/**
 * Why a failure may succeed when tried again.
 *
 * - `connection`: the link failed, not the statement: reconnect and run it again. The statement
 *   may or may not have committed when the link broke mid-statement, so only idempotent work may
 *   be run again blindly.
 * - `conflict`: the server rolled the transaction back to break a serialization conflict or a
 *   deadlock; running the whole transaction again is the documented remedy.
 */
export type RetryReason = 'connection' | 'conflict';

/** Retryable SQLSTATEs, one by one (class 08 is in {@link RETRYABLE_SQLSTATE_CLASSES}). */
export const RETRYABLE_SQLSTATES: Readonly<Record<string, RetryReason>> = Object.freeze({
  '40001': 'conflict', // serialization_failure
  '40P01': 'conflict', // deadlock_detected
  '57P01': 'connection', // admin_shutdown (pg_terminate_backend, server stop)
  '57P02': 'connection', // crash_shutdown
  '57P03': 'connection', // cannot_connect_now (starting up, shutting down, in recovery)
  '53300': 'connection', // too_many_connections
  '53400': 'connection', // configuration_limit_exceeded
  '25006': 'connection', // read_only_sql_transaction: a standby reached where a primary was wanted
});

/** Retryable SQLSTATE classes: every code of the class, except {@link NOT_RETRYABLE_SQLSTATES}. */
export const RETRYABLE_SQLSTATE_CLASSES: Readonly<Record<string, RetryReason>> = Object.freeze({
  '08': 'connection', // connection_exception
});

/** Codes inside a retryable class that are not retryable. */
export const NOT_RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set([
  // protocol_violation is in class 08 but means a client bug, not a broken link.
  '08P01',
]);

/** Node.js network error codes (`err.code` without a SQLSTATE): all mean the link failed. */
export const RETRYABLE_ERRNOS: Readonly<Record<string, RetryReason>> = Object.freeze({
  ECONNREFUSED: 'connection',
  ECONNRESET: 'connection',
  ECONNABORTED: 'connection',
  EPIPE: 'connection',
  ETIMEDOUT: 'connection',
  EHOSTUNREACH: 'connection',
  ENETUNREACH: 'connection',
  ENOTFOUND: 'connection',
  EAI_AGAIN: 'connection',
});

/**
 * Messages of node-postgres and pg-pool errors that carry neither a SQLSTATE nor an errno but
 * mean the link failed (a socket ended, a pool or client closed, a connect or read timed out).
 */
export const RETRYABLE_MESSAGES: readonly RegExp[] = Object.freeze([
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
]);

const SQLSTATE = /^[0-9A-Z]{5}$/;

/** Whether `code` has the shape of a SQLSTATE (five digits or capitals). */
export function isSqlState(code: unknown): code is string {
  return typeof code === 'string' && SQLSTATE.test(code);
}

/** Whether `code` is a Node.js network error code of {@link RETRYABLE_ERRNOS}. */
export function isRetryableErrno(code: string): boolean {
  return own(RETRYABLE_ERRNOS, code) !== undefined;
}

/**
 * Looks a failure up in the table: by SQLSTATE when the server sent one, else by the Node.js
 * error code, else by the message. Undefined: not retryable.
 */
export function retryReason(failure: {
  sqlState?: string | undefined;
  errno?: string | undefined;
  message?: string | undefined;
}): RetryReason | undefined {
  const { sqlState, errno, message } = failure;
  if (sqlState !== undefined) {
    if (NOT_RETRYABLE_SQLSTATES.has(sqlState)) return undefined;
    return (
      own(RETRYABLE_SQLSTATES, sqlState) ?? own(RETRYABLE_SQLSTATE_CLASSES, sqlState.slice(0, 2))
    );
  }
  const byErrno = errno === undefined ? undefined : own(RETRYABLE_ERRNOS, errno);
  if (byErrno !== undefined) return byErrno;
  if (message !== undefined && RETRYABLE_MESSAGES.some((re) => re.test(message))) {
    return 'connection';
  }
  return undefined;
}

function own(table: Readonly<Record<string, RetryReason>>, key: string): RetryReason | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}
