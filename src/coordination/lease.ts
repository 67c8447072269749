import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { ConflictError, StaleTokenError, ValidationError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent } from '../core/index.js';
import { StatementRunner } from '../core/index.js';
import type { Queryable } from '../core/index.js';
import { checkOptions, checkText, describe, MAX_BIGINT, optionalInt } from '../core/index.js';
import { checkQueryable, checkTx, frozen } from '../core/index.js';

/** Largest lease name and owner, in UTF-8 bytes. */
export const MAX_LEASE_NAME_BYTES = 512;
/** Shortest `ttlMs` of a lease: 100 ms. */
export const MIN_LEASE_TTL_MS = 100;
/** Longest `ttlMs` of a lease: 7 days. */
export const MAX_LEASE_TTL_MS = 7 * 24 * 3600 * 1000;

/** A held lease, as returned by {@link LeaseManager.acquire}. `token` is its fencing token: pass it to whatever the lease protects. */
export interface Lease {
  readonly name: string;
  readonly owner: string;
  /** Fencing token: strictly greater than every token handed out before for this name. */
  readonly token: bigint;
  /** Expiry on the server clock, as of the last acquire or renew. */
  readonly expiresAt: Date;
}

/**
 * What {@link LeaseManager.renew} and {@link LeaseManager.release} need of a lease: its name and
 * fencing token. A {@link Lease} is one; `owner`, when present, is validated but not compared.
 */
export type LeaseHandle = Pick<Lease, 'name' | 'token'> & { readonly owner?: string };

/** Default lease time of a LeaseManager, in ms. */
export const DEFAULT_LEASE_TTL_MS = 30_000;

export interface LeaseManagerOptions {
  /** Schema of pgcoord's tables. Default `pgcoord`. */
  schema?: string;
  /** Owner recorded for leases taken without one. Default `<hostname>:<pid>:<random>`. */
  owner?: string;
  /** Default lease time in ms. Default 30000. Range 100 ms .. 7 days. */
  ttlMs?: number;
}

export interface AcquireOptions {
  /** Who holds it (for humans and {@link LeaseManager.holder}). Default the manager's owner. */
  owner?: string;
  /** Lease time in ms (server clock). Default the manager's `ttlMs`. */
  ttlMs?: number;
  /** Run the statement on this client (for example inside your transaction). */
  tx?: Queryable;
}

export interface WithLeaseOptions {
  /** Who holds it. Default the manager's owner. */
  owner?: string;
  /** Lease time in ms. Default the manager's `ttlMs`. */
  ttlMs?: number;
  /** How often to renew while `fn` runs, in ms. Default `ttlMs / 3`. */
  renewIntervalMs?: number;
}

interface LeaseRow {
  token: string;
  expires_at: Date;
}

/**
 * Named leases with fencing tokens, decided on the server clock. At most one holder per name at
 * a time; tokens of a name strictly increase across every holder, so a resource that remembers
 * the largest token it has seen can refuse a holder that lost its lease without knowing it.
 *
 * @example
 * const leases = new LeaseManager(pool);
 * const lease = await leases.acquire('nightly-report', { ttlMs: 30_000 });
 * if (lease) { try { await work(lease.token); } finally { await leases.release(lease); } }
 */
/** Defaults and validation of {@link LeaseManagerOptions}: frozen. */
function resolveLeaseManagerOptions(
  options: LeaseManagerOptions,
): Readonly<Required<LeaseManagerOptions>> {
  const o = checkOptions('options', options);
  return frozen({
    schema: checkSchemaName(o.schema ?? DEFAULT_SCHEMA),
    owner: checkText(
      'options.owner',
      o.owner ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      { maxBytes: MAX_LEASE_NAME_BYTES },
    ),
    ttlMs: checkTtl('options.ttlMs', o.ttlMs, DEFAULT_LEASE_TTL_MS),
  });
}

export class LeaseManager {
  private readonly q: Queryable;
  private readonly schema: string;
  /** Migrate once, run, convert the error. */
  private readonly statements: StatementRunner;
  private readonly table: string;
  /** Owner used when a call does not name one. */
  readonly owner: string;
  /** Default lease time in ms. */
  readonly ttlMs: number;

  constructor(q: Queryable, options: LeaseManagerOptions = {}) {
    const o = resolveLeaseManagerOptions(options);
    this.q = checkQueryable('queryable', q);
    this.schema = o.schema;
    this.statements = new StatementRunner(this.q, this.schema);
    this.table = `${quoteIdent(this.schema)}.leases`;
    this.owner = o.owner;
    this.ttlMs = o.ttlMs;
  }

  /**
   * Takes the lease `name` if it is free or expired. Returns the lease with a new, larger
   * fencing token, or undefined when someone (including this owner) holds it.
   */
  async acquire(name: string, options: AcquireOptions = {}): Promise<Lease | undefined> {
    checkName(name);
    const o = checkOptions('options', options);
    const owner =
      o.owner === undefined
        ? this.owner
        : checkText('options.owner', o.owner, { maxBytes: MAX_LEASE_NAME_BYTES });
    const ttlMs = checkTtl('options.ttlMs', o.ttlMs, this.ttlMs);
    // The function waits for the row first and reads the clock after (sql/0010): a call that
    // waited still gets its whole ttl.
    const rows = await this.run(o.tx, (q) =>
      q.query<LeaseRow>(
        `SELECT token::text, expires_at FROM ${this.fn('lease_acquire')}($1::text, $2::text, $3::float8)`,
        [name, owner, ttlMs],
      ),
    );
    const r = rows[0];
    return r ? { name, owner, token: BigInt(r.token), expiresAt: r.expires_at } : undefined;
  }

  /**
   * Extends a held lease by `ttlMs` from now (server clock; "now" is when the call holds the
   * lease row, after any wait for it). Returns the renewed lease, with the owner recorded at
   * acquire. The lease is identified by its name and fencing token only: whoever has the current
   * token can renew it; `lease.owner` is validated like acquire's but not compared.
   * @throws StaleTokenError when the lease expired or was taken over: nothing was changed.
   */
  async renew(
    lease: LeaseHandle,
    options: { ttlMs?: number; tx?: Queryable } = {},
  ): Promise<Lease> {
    checkLease(lease);
    const o = checkOptions('options', options);
    const ttlMs = checkTtl('options.ttlMs', o.ttlMs, this.ttlMs);
    const rows = await this.run(o.tx, (q) =>
      q.query<{ owner: string; expires_at: Date }>(
        `SELECT owner, expires_at FROM ${this.fn('lease_renew')}($1::text, $2::bigint, $3::float8)`,
        [lease.name, lease.token.toString(), ttlMs],
      ),
    );
    const r = rows[0];
    if (!r) throw stale(lease, 'renew');
    return { name: lease.name, owner: r.owner, token: lease.token, expiresAt: r.expires_at };
  }

  /**
   * Gives the lease up at once, so another owner can take it without waiting for expiry. Like
   * {@link renew}, it acts on the name and fencing token only.
   * @throws StaleTokenError when the lease had already expired or been taken over.
   */
  async release(lease: LeaseHandle, options: { tx?: Queryable } = {}): Promise<void> {
    checkLease(lease);
    const o = checkOptions('options', options);
    const rows = await this.run(o.tx, (q) =>
      q.query<{ released: boolean }>(
        `SELECT ${this.fn('lease_release')}($1::text, $2::bigint) AS released`,
        [lease.name, lease.token.toString()],
      ),
    );
    if (rows[0]?.released !== true) throw stale(lease, 'release');
  }

  /** The current holder of `name`, or undefined when it is free. */
  async holder(
    name: string,
    options: { tx?: Queryable } = {},
  ): Promise<{ owner: string; token: bigint; expiresAt: Date } | undefined> {
    checkName(name);
    const rows = await this.run(checkOptions('options', options).tx, (q) =>
      q.query<{ owner: string; token: string; expires_at: Date }>(
        `SELECT owner, token::text, expires_at FROM ${this.table}
          WHERE name = $1::text AND expires_at > clock_timestamp()`,
        [name],
      ),
    );
    const r = rows[0];
    return r ? { owner: r.owner, token: BigInt(r.token), expiresAt: r.expires_at } : undefined;
  }

  /**
   * Leases held right now (expired ones left out), by name, at most `limit` (default 200,
   * 1 .. 10,000), with the time each has left on the server clock. Leader elections show up here
   * too: their leadership is a lease named after the election.
   */
  async list(
    options: { limit?: number; tx?: Queryable } = {},
  ): Promise<
    Array<{ name: string; owner: string; token: bigint; expiresAt: Date; remainingMs: number }>
  > {
    const o = checkOptions('options', options);
    const limit = optionalInt('options.limit', o.limit, { min: 1, max: 10_000 }, 200);
    const rows = await this.run(o.tx, (q) =>
      q.query<{
        name: string;
        owner: string;
        token: string;
        expires_at: Date;
        remaining_ms: number;
      }>(
        `SELECT name, owner, token::text, expires_at,
            (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS remaining_ms
          FROM ${this.table} WHERE expires_at > clock_timestamp() ORDER BY name LIMIT $1::int`,
        [limit],
      ),
    );
    return rows.map((r) => ({
      name: r.name,
      owner: r.owner,
      token: BigInt(r.token),
      expiresAt: r.expires_at,
      remainingMs: Math.max(0, Math.round(r.remaining_ms)),
    }));
  }

  /**
   * Runs `fn` while holding the lease `name`, renewing it every `renewIntervalMs`. If the lease
   * is lost (taken over, or not renewed before it expires, for example while the database is
   * unreachable), `signal` aborts with a {@link StaleTokenError} as its reason: `fn` should stop
   * touching what the lease protects. The lease is released when `fn` settles.
   * @throws ConflictError when the lease is held by someone else.
   */
  async withLease<T>(
    name: string,
    fn: (signal: AbortSignal, lease: Lease) => Promise<T> | T,
    options: WithLeaseOptions = {},
  ): Promise<T> {
    const o = checkOptions('options', options);
    const ttlMs = checkTtl('options.ttlMs', o.ttlMs, this.ttlMs);
    const renewIntervalMs = optionalInt(
      'options.renewIntervalMs',
      o.renewIntervalMs,
      { min: 10, max: ttlMs - 1 },
      Math.max(10, Math.floor(ttlMs / 3)),
    );
    if (typeof fn !== 'function')
      throw new ValidationError('fn', `must be a function, got ${describe(fn)}`);
    // Local deadline: measured from before each successful request (the acquire included), so
    // it errs on the early side however long the reply took to arrive.
    const acquireSentAt = performance.now();
    const first = await this.acquire(name, { owner: o.owner, ttlMs });
    if (!first) throw new ConflictError(`lease "${name}" is held by someone else`);
    let lease = first;
    let deadline = acquireSentAt + ttlMs;
    if (performance.now() >= deadline) {
      // The reply came too late to be sure the lease is still ours: fn never starts.
      await this.release(lease).catch(() => undefined);
      throw new StaleTokenError(
        `lease "${name}" (token ${lease.token}) may have expired before its acquire answered`,
      );
    }
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let renewing: Promise<void> | undefined;
    let done = false;
    const lose = (err: Error) => {
      if (!controller.signal.aborted) controller.abort(err);
    };
    const tick = () => {
      timer = undefined;
      if (done || controller.signal.aborted) return;
      if (performance.now() >= deadline) {
        lose(
          new StaleTokenError(
            `lease "${name}" (token ${lease.token}) could not be renewed before it expired`,
          ),
        );
        return;
      }
      const sentAt = performance.now();
      renewing = this.renew(lease, { ttlMs })
        .then((l) => {
          lease = l;
          deadline = sentAt + ttlMs;
        })
        .catch((err: unknown) => {
          if (err instanceof StaleTokenError) lose(err);
          // Connectivity errors: keep trying until the local deadline passes.
        })
        .finally(() => {
          renewing = undefined;
          if (!done && !controller.signal.aborted) {
            timer = setTimeout(
              tick,
              Math.max(0, Math.min(renewIntervalMs, deadline - performance.now())),
            );
            timer.unref();
          }
        });
    };
    timer = setTimeout(tick, Math.min(renewIntervalMs, deadline - performance.now()));
    timer.unref();
    try {
      return await fn(controller.signal, lease);
    } finally {
      done = true;
      if (timer) clearTimeout(timer);
      await renewing;
      if (!controller.signal.aborted) {
        await this.release(lease).catch(() => undefined);
      }
    }
  }

  /** A function of pgcoord's schema, quoted. */
  private fn(name: string): string {
    return `${quoteIdent(this.schema)}.${name}`;
  }

  private async run<R extends object>(
    tx: Queryable | undefined,
    fn: (q: Queryable) => Promise<{ rows: R[] }>,
  ): Promise<R[]> {
    return (await this.statements.exec(checkTx(tx), fn)).rows;
  }
}

function stale(lease: LeaseHandle, op: string): StaleTokenError {
  return new StaleTokenError(
    `cannot ${op} lease "${lease.name}" with token ${lease.token}: it expired or another holder took it`,
  );
}

function checkName(name: unknown): string {
  return checkText('name', name, { maxBytes: MAX_LEASE_NAME_BYTES });
}

function checkLease(lease: unknown): void {
  const l = lease as Partial<Lease> | null;
  if (typeof l !== 'object' || l === null || typeof l.token !== 'bigint') {
    throw new ValidationError(
      'lease',
      `must be a lease returned by acquire(), got ${describe(lease)}`,
    );
  }
  // Fencing tokens come from a bigint sequence: one outside its range was never handed out.
  if (l.token < 1n || l.token > MAX_BIGINT) {
    throw new ValidationError('lease.token', `must be 1 to ${MAX_BIGINT}, got ${l.token}`);
  }
  checkName(l.name);
  // Not compared (the token identifies the grant), but held to acquire's rules all the same.
  if (l.owner !== undefined) {
    checkText('lease.owner', l.owner, { maxBytes: MAX_LEASE_NAME_BYTES });
  }
}

function checkTtl(argument: string, value: unknown, fallback: number): number {
  return optionalInt(argument, value, { min: MIN_LEASE_TTL_MS, max: MAX_LEASE_TTL_MS }, fallback);
}
