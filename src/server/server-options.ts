import net from 'node:net';
import { ValidationError } from '../core/index.js';
import { DEFAULT_SCHEMA, checkSchemaName } from '../core/index.js';
import { checkInt } from '../core/index.js';

/** Settings of the HTTP service, after defaults, environment fallbacks and validation. */
export interface ServerSettings {
  /** Address to bind. Default `127.0.0.1` (env `PGCOORD_HOST`). */
  host: string;
  /** TCP port; 0 picks a free one. Default 8080 (env `PGCOORD_PORT`). */
  port: number;
  /**
   * Bearer token every request but `/healthz`, `/readyz` and the console's page and files must
   * present (env `PGCOORD_TOKEN`).
   * Required when `host` is not a loopback address. At least 16 characters.
   */
  token: string | undefined;
  /** Largest request body, in bytes. Default 16 MiB (env `PGCOORD_BODY_LIMIT_BYTES`). */
  bodyLimitBytes: number;
  /** Schema of the pgcoord tables. Default `pgcoord` (env `PGCOORD_SCHEMA`). */
  schema: string;
  /**
   * Refuse every write (any method but GET, HEAD and OPTIONS) with 403 `PGCOORD_READ_ONLY`; the
   * console hides its write buttons. Default false (env `PGCOORD_READ_ONLY=1`).
   */
  readOnly: boolean;
}

export type ServerSettingsInput = Partial<ServerSettings>;

const DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  bodyLimitBytes: 16 * 1024 * 1024,
};

/** Shortest accepted token: anything shorter is guessable. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * Defaults, then `PGCOORD_*` environment variables, then explicit input; validates every field.
 * Refuses a non-loopback `host` without a token: an open coordination service on the network is
 * a remote write access to your database.
 */
export function resolveServerSettings(
  input: ServerSettingsInput = {},
  env: NodeJS.ProcessEnv = process.env,
): ServerSettings {
  const host = input.host ?? env.PGCOORD_HOST ?? DEFAULTS.host;
  if (typeof host !== 'string' || host.length === 0) {
    throw new ValidationError('host', 'must be a non-empty address');
  }
  const port = checkInt(
    'port',
    input.port ?? intFromEnv(env.PGCOORD_PORT, 'PGCOORD_PORT') ?? DEFAULTS.port,
    {
      min: 0,
      max: 65535,
    },
  );
  const bodyLimitBytes = checkInt(
    'bodyLimitBytes',
    input.bodyLimitBytes ??
      intFromEnv(env.PGCOORD_BODY_LIMIT_BYTES, 'PGCOORD_BODY_LIMIT_BYTES') ??
      DEFAULTS.bodyLimitBytes,
    { min: 1024, max: 1024 * 1024 * 1024 },
  );
  const rawToken = input.token ?? (env.PGCOORD_TOKEN || undefined);
  if (rawToken !== undefined) {
    if (
      typeof rawToken !== 'string' ||
      rawToken.trim() !== rawToken ||
      rawToken.length < MIN_TOKEN_LENGTH
    ) {
      throw new ValidationError(
        'token',
        `must be at least ${MIN_TOKEN_LENGTH} characters without surrounding spaces (PGCOORD_TOKEN)`,
      );
    }
  }
  if (!isLoopback(host) && rawToken === undefined) {
    throw new ValidationError(
      'host',
      `refusing to listen on ${host} without a token: set PGCOORD_TOKEN (at least ${MIN_TOKEN_LENGTH} characters) or bind 127.0.0.1`,
    );
  }
  const schema = checkSchemaName(input.schema ?? env.PGCOORD_SCHEMA ?? DEFAULT_SCHEMA);
  const readOnly =
    input.readOnly ?? boolFromEnv(env.PGCOORD_READ_ONLY, 'PGCOORD_READ_ONLY') ?? false;
  if (typeof readOnly !== 'boolean') {
    throw new ValidationError('readOnly', 'must be true or false');
  }
  return { host, port, token: rawToken, bodyLimitBytes, schema, readOnly };
}

/** Whether `host` only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1' || h.startsWith('::ffff:127.');
  return false;
}

function intFromEnv(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value))
    throw new ValidationError(name, `must be a whole number, got "${value}"`);
  return Number(value);
}

function boolFromEnv(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === '1' || value === 'true') return true;
  if (value === '0' || value === 'false') return false;
  throw new ValidationError(name, `must be 1, 0, true or false, got "${value}"`);
}
