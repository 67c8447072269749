import type pg from 'pg';
import { resolveConnectionConfig, type ConnectionInput } from '../core/index.js';
import { resolveLogger, ValidationError, type Logger, type PgcoordError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA } from '../core/index.js';
import type { Notification } from './listener-connection.js';
import type { OverflowPolicy } from './notification-iterator.js';
import { checkOptions, checkText, optionalInt } from '../core/index.js';

/** A channel handler. May be async; a throw or rejection is reported as `handler:error`. */
export type NotificationHandler = (
  payload: string,
  notification: Notification,
) => void | Promise<void>;

/** Options of {@link Listener.handle}. */
export interface HandleOptions {
  /**
   * Runs after every (re)connect, once the channel is LISTENed: read what was missed while not
   * listening (e.g. rows of a table newer than the last one handled). Runs in the channel's
   * order with its notifications: a notification that arrives meanwhile is handled after it.
   */
  backlog?: () => void | Promise<void>;
  /**
   * Handlers of this channel allowed to run at the same time. Default 1: one at a time, in the
   * order the notifications arrived. Above 1, order is not guaranteed.
   */
  concurrency?: number;
}

/** Logger hook: pino, or anything with some of the {@link Logger} methods `(obj, msg)`. */
export type ListenerLogger = Partial<Logger>;

/** Options of {@link Listener}. */
export interface ListenerOptions {
  /**
   * Where to connect (string or pg config, resolved with explicit defaults). Ignored when
   * `connect` is given. Default: `DATABASE_URL`, then the `PG*` variables, then 127.0.0.1:5432.
   */
  connection?: ConnectionInput;
  /** Shorthand for `connection` with a connection string. */
  connectionString?: string;
  /**
   * Dials a new dedicated connection; called on every (re)connect and must return a fresh,
   * connected client each time (never a pooled one). The listener ends it when done. Attach an
   * `'error'` listener to the client before connecting it (as `ClusterPool.connectPrimaryClient`
   * does): an error in the same socket read as the end of the handshake has no other listener.
   */
  connect?: () => Promise<pg.Client>;
  /**
   * Reconnect delay in ms after the first retry (which is immediate); doubles per failed attempt,
   * with jitter, up to `maxReconnectDelayMs`. Default 100.
   */
  reconnectDelayMs?: number;
  /** Cap of the reconnect delay in ms. Default 5000. */
  maxReconnectDelayMs?: number;
  /**
   * Health query (`SELECT 1`) runs when the connection was silent this long, in ms. With
   * `healthCheckTimeoutMs` it bounds how long a vanished server goes unnoticed. Default 2000.
   */
  healthCheckIntervalMs?: number;
  /** A health query (or LISTEN, or fetch) not answered within this many ms kills the connection. Default 3000. */
  healthCheckTimeoutMs?: number;
  /** Timeout of dialing one connection, in ms. Default 5000. */
  connectTimeoutMs?: number;
  /** TCP keepalive initial delay in ms for connections this listener dials. Default 1000. */
  keepAliveInitialDelayMs?: number;
  /** `application_name` of connections this listener dials. Default `pgcoord-listener`. */
  applicationName?: string;
  /** Schema holding stored large payloads (see `notify`). Default `pgcoord`. */
  schema?: string;
  /** Logger hook. Default: none. */
  logger?: ListenerLogger;
}

/** Events of a {@link Listener}. */
export interface ListenerEvents {
  /** Connected and every channel LISTENed (backlogs are queued). `reconnected` is false the first time. */
  connect: [info: { reconnected: boolean; processId: number | undefined }];
  /** The connection was lost (or closed by stop()). */
  disconnect: [info: { error: PgcoordError | undefined }];
  /**
   * A reconnect attempt is about to be made after `delayMs`. `attempt` counts from 1 since the
   * last connection that stayed up 1 s; the first is immediate (`delayMs` 0).
   */
  reconnect: [info: { attempt: number; delayMs: number; error: PgcoordError | undefined }];
  /** A connection-level error (dial, LISTEN, health check). Never fatal. */
  error: [error: PgcoordError];
  /** A handler or backlog threw. Never fatal. */
  'handler:error': [
    info: {
      channel: string;
      error: unknown;
      notification: Notification | undefined;
      kind: 'handler' | 'backlog';
    },
  ];
  /** An iterator's buffer was full; `dropped` notifications were discarded. */
  overflow: [info: { channel: string; dropped: number; policy: OverflowPolicy }];
}

/** Options of a Listener after defaults and validation. */
export interface ResolvedListenerOptions {
  /** The caller's dialer, or undefined to dial `clientConfig`. */
  connect: (() => Promise<pg.Client>) | undefined;
  /** Config of the built-in dialer: keepalive, connect timeout and application_name set. */
  clientConfig: pg.ClientConfig;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  healthCheckIntervalMs: number;
  healthCheckTimeoutMs: number;
  connectTimeoutMs: number;
  schema: string;
  logger: Logger;
}

/** Defaults and validation of {@link ListenerOptions}: a bad option throws a ValidationError naming it. */
export function resolveListenerOptions(
  options: ListenerOptions | undefined,
): ResolvedListenerOptions {
  const o = checkOptions('options', options);
  const int = (name: keyof ListenerOptions, min: number, max: number, fallback: number) =>
    optionalInt(`options.${name}`, o[name], { min, max }, fallback);
  const reconnectDelayMs = int('reconnectDelayMs', 0, 3_600_000, 100);
  const maxReconnectDelayMs = int('maxReconnectDelayMs', 0, 3_600_000, 5_000);
  if (maxReconnectDelayMs < reconnectDelayMs) {
    throw new ValidationError(
      'options.maxReconnectDelayMs',
      `must be at least reconnectDelayMs (${reconnectDelayMs})`,
    );
  }
  const connectTimeoutMs = int('connectTimeoutMs', 10, 3_600_000, 5_000);
  const keepAliveMs = int('keepAliveInitialDelayMs', 0, 3_600_000, 1_000);
  if (o.connect !== undefined && typeof o.connect !== 'function') {
    throw new ValidationError('options.connect', 'must be a function returning a pg.Client');
  }
  if (o.connection !== undefined && o.connectionString !== undefined) {
    throw new ValidationError(
      'options.connectionString',
      'give connection or connectionString, not both',
    );
  }
  const applicationName =
    o.applicationName === undefined
      ? undefined
      : checkText('options.applicationName', o.applicationName, { maxBytes: 63 });
  if (typeof o.logger === 'function') {
    // resolveLogger would take a function; the Listener never did.
    throw new ValidationError(
      'options.logger',
      'must be an object with debug/info/warn/error methods',
    );
  }
  const logger = resolveLogger(o.logger);
  const base = o.connect ? {} : resolveConnectionConfig(o.connection ?? o.connectionString);
  return {
    connect: o.connect,
    clientConfig: {
      ...base,
      keepAlive: true,
      keepAliveInitialDelayMillis: keepAliveMs,
      connectionTimeoutMillis: connectTimeoutMs,
      application_name: applicationName ?? base.application_name ?? 'pgcoord-listener',
    },
    reconnectDelayMs,
    maxReconnectDelayMs,
    healthCheckIntervalMs: int('healthCheckIntervalMs', 10, 3_600_000, 2_000),
    healthCheckTimeoutMs: int('healthCheckTimeoutMs', 10, 3_600_000, 3_000),
    connectTimeoutMs,
    schema: checkSchemaName(o.schema ?? DEFAULT_SCHEMA),
    logger,
  };
}
