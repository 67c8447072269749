import { ValidationError } from '../core/index.js';
import type { HostPort } from './topology.js';

/**
 * libpq multi-host connection URLs: `postgres://u:p@h1:5432,h2:5433,[::1]/db?target_session_attrs=
 * read-write&load_balance_hosts=random`. node-postgres reads only the first host; the cluster pool
 * needs all of them plus the two routing parameters, and passes everything else on to pg.
 */

/** libpq's `target_session_attrs`: which instances a session may use. */
export type TargetSessionAttrs =
  'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';

/** Every `target_session_attrs` value libpq accepts. */
export const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = [
  'any',
  'read-write',
  'read-only',
  'primary',
  'standby',
  'prefer-standby',
];

/** libpq's `load_balance_hosts`: `disable` tries hosts in order, `random` picks at random. */
export type LoadBalanceHosts = 'disable' | 'random';

/** A parsed multi-host URL. */
export interface MultiHostUrl {
  /** Every host in order, with its port (default 5432, or the single port given for all). */
  hosts: HostPort[];
  user: string | undefined;
  password: string | undefined;
  database: string | undefined;
  /** `target_session_attrs` when present. */
  targetSessionAttrs: TargetSessionAttrs | undefined;
  /** `load_balance_hosts` when present. */
  loadBalanceHosts: LoadBalanceHosts | undefined;
  /** The other query parameters (sslmode, application_name, ...), decoded, passed on to pg. */
  params: Record<string, string>;
  /**
   * A single-host URL for one instance, carrying user, password, database and the other
   * parameters, for node-postgres. `defaults` fill a user or database the URL leaves out (pg
   * would otherwise fall back to the OS user).
   */
  urlFor(
    target: HostPort,
    defaults?: { user?: string; database?: string },
    overrides?: Record<string, string>,
  ): string;
}

const DEFAULT_PORT = 5432;

function decode(argument: string, value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new ValidationError(argument, 'has a malformed percent-encoding');
  }
}

function parsePort(argument: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new ValidationError(
      argument,
      `port must be an integer 1..65535, got ${JSON.stringify(text)}`,
    );
  }
  return Number(text);
}

/** Splits `h1:1,[::1]:2,h3` into host and port texts (port '' when absent). */
function splitHostList(argument: string, text: string): Array<{ host: string; port: string }> {
  const out: Array<{ host: string; port: string }> = [];
  for (const part of text.split(',')) {
    const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(part);
    if (v6) {
      out.push({ host: v6[1]!, port: v6[2] ?? '' });
      continue;
    }
    if (part.includes('[') || part.includes(']')) {
      throw new ValidationError(argument, `malformed host ${JSON.stringify(part)}`);
    }
    const i = part.indexOf(':');
    out.push(
      i === -1 ? { host: part, port: '' } : { host: part.slice(0, i), port: part.slice(i + 1) },
    );
  }
  return out;
}

/**
 * Parses a libpq connection URI with one or more hosts. Hosts come from the authority
 * (`h1:5432,h2`) or a `host=` parameter (which wins, as in libpq); ports from each host or a
 * `port=` parameter (one port for all hosts, or one per host). Throws {@link ValidationError}
 * naming the part at fault.
 */
export function parseMultiHostUrl(url: string, argument = 'connectionString'): MultiHostUrl {
  if (typeof url !== 'string') throw new ValidationError(argument, 'must be a string');
  const m = /^(postgres(?:ql)?):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/i.exec(url);
  if (!m) {
    throw new ValidationError(argument, 'must be a postgres:// or postgresql:// URL');
  }
  const [, scheme, authority = '', pathPart = '', query = ''] = m;
  let userinfo = '';
  let hostspec = authority;
  const at = authority.lastIndexOf('@');
  if (at !== -1) {
    userinfo = authority.slice(0, at);
    hostspec = authority.slice(at + 1);
  }
  let user: string | undefined;
  let password: string | undefined;
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    user = decode(argument, colon === -1 ? userinfo : userinfo.slice(0, colon));
    if (colon !== -1) password = decode(argument, userinfo.slice(colon + 1));
  }
  const dbText = pathPart.replace(/^\//, '');
  let database = dbText ? decode(argument, dbText) : undefined;

  const params: Record<string, string> = {};
  let targetSessionAttrs: TargetSessionAttrs | undefined;
  let loadBalanceHosts: LoadBalanceHosts | undefined;
  let hostParam: string | undefined;
  let portParam: string | undefined;
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = decode(argument, (eq === -1 ? pair : pair.slice(0, eq)).replace(/\+/g, ' '));
    const value = decode(argument, (eq === -1 ? '' : pair.slice(eq + 1)).replace(/\+/g, ' '));
    switch (key) {
      case 'target_session_attrs':
        if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(value)) {
          throw new ValidationError(
            `${argument}.target_session_attrs`,
            `must be one of ${TARGET_SESSION_ATTRS.join(', ')}, got ${JSON.stringify(value)}`,
          );
        }
        targetSessionAttrs = value as TargetSessionAttrs;
        break;
      case 'load_balance_hosts':
        if (value !== 'disable' && value !== 'random') {
          throw new ValidationError(
            `${argument}.load_balance_hosts`,
            `must be disable or random, got ${JSON.stringify(value)}`,
          );
        }
        loadBalanceHosts = value;
        break;
      case 'host':
        hostParam = value;
        break;
      case 'port':
        portParam = value;
        break;
      case 'user':
        user = value;
        break;
      case 'password':
        password = value;
        break;
      case 'dbname':
        database = value;
        break;
      default:
        params[key] = value;
    }
  }

  const listed =
    hostParam !== undefined
      ? hostParam.split(',').map((host) => ({ host, port: '' }))
      : splitHostList(argument, decode(argument, hostspec));
  const ports = portParam !== undefined ? portParam.split(',') : undefined;
  if (ports && ports.length !== 1 && ports.length !== listed.length) {
    throw new ValidationError(
      `${argument}.port`,
      `gives ${ports.length} ports for ${listed.length} hosts; give one for all or one per host`,
    );
  }
  const hosts: HostPort[] = listed.map((h, i) => {
    const portText = h.port || (ports ? (ports.length === 1 ? ports[0]! : ports[i]!) : '');
    return {
      host: h.host || 'localhost',
      port: portText ? parsePort(`${argument}.port`, portText) : DEFAULT_PORT,
    };
  });

  return {
    hosts,
    user,
    password,
    database,
    targetSessionAttrs,
    loadBalanceHosts,
    params,
    urlFor(target, defaults = {}, overrides = {}) {
      const rest = Object.entries({ ...params, ...overrides })
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
        .join('&');
      const u = user ?? defaults.user;
      const db = database ?? defaults.database;
      const encodedUser =
        u === undefined
          ? ''
          : encodeURIComponent(u) +
            (password === undefined ? '' : ':' + encodeURIComponent(password)) +
            '@';
      const dbPath = db === undefined ? '' : '/' + encodeURIComponent(db);
      const host = target.host.includes(':') ? `[${target.host}]` : encodeURIComponent(target.host);
      return `${scheme}://${encodedUser}${host}:${target.port}${dbPath}${rest ? '?' + rest : ''}`;
    },
  };
}
