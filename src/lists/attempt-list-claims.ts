import type { EventEmitter } from 'node:events';
import type pg from 'pg';
import { ATTEMPT_LIST_LIMITS, checkClaims, checkList } from './attempt-list-limits.js';
import { unpack, type AttemptListSql } from './attempt-list-sql.js';
import { IssuedClaim } from './issued-claim.js';
import { checkClaimLimits } from './attempt-list-settings.js';
import {
  checkBoolean,
  checkInt,
  checkOptions,
  checkTx,
  StatementRunner,
  optionalInt,
  StaleTokenError,
  withRetry,
  withTransaction,
  type Queryable,
  type RetryOptions,
} from '../core/index.js';
import type {
  AttemptListEvents,
  Claim,
  ClaimOptions,
  ClaimRef,
  ClaimRow,
  CompleteAndClaimOptions,
  CompleteAndClaimResult,
  ExtendResult,
  FailOptions,
  FailResult,
  SettleOptions,
  SettleResult,
} from './attempt-list-types.js';

const L = ATTEMPT_LIST_LIMITS;

/** A claim's own tighter limits as statement parameters (null: as stored). */
type ClaimLimitParams = ReturnType<typeof checkClaimLimits>;
const NO_LIMIT = L.maxAttempts;

/**
 * The claim side of an {@link AttemptList}: claims, completeAndClaim, and the settlements
 * (complete, release, fail, extend) that present a claim's token. AttemptList's methods of the
 * same names delegate here; their doc comments are the contract.
 *
 * This is the hottest path of pgcoord (a busy worker calls it 1000s of times a second), so it
 * runs statements through the runner's `exec()`, not `run()`: `run()` costs an options object, a
 * closure and an extra async frame per call (measured in a micro-loop: ~0.2 µs per call before,
 * ~0.6-0.8 µs through `run()`), and claims never retry through it anyway (their retry is the
 * deadlock retry of {@link query}).
 */
export class AttemptListClaims {
  private readonly q: Queryable;
  private readonly schema: string;
  private readonly sql: AttemptListSql;
  private readonly statements: StatementRunner;
  private readonly maxAttempts: number;
  private readonly events: EventEmitter<AttemptListEvents>;

  constructor(
    queryable: Queryable,
    schema: string,
    sql: AttemptListSql,
    maxAttempts: number,
    events: EventEmitter<AttemptListEvents>,
  ) {
    this.q = queryable;
    this.schema = schema;
    this.sql = sql;
    this.statements = new StatementRunner(queryable, schema);
    this.maxAttempts = maxAttempts;
    this.events = events;
  }

  /** See {@link AttemptList.claim}. */
  async claim(list: string, options: ClaimOptions): Promise<Claim[]> {
    checkList(list);
    const o = checkOptions('options', options);
    const limit = checkInt('options.limit', o.limit, { min: 1, max: L.maxClaimLimit });
    const { leaseMs, maxAttempts, tx, limits } = this.checkClaimOptions(o);
    return this.run(tx, (q) =>
      this.claimOn(q, tx === undefined, list, limit, leaseMs, maxAttempts, limits),
    );
  }

  /** See {@link AttemptList.completeAndClaim}. */
  async completeAndClaim(
    list: string,
    done: ClaimRef[],
    options: CompleteAndClaimOptions,
  ): Promise<CompleteAndClaimResult> {
    checkList(list);
    const { items, tokens, ctids } = checkClaims(done, 'done');
    const o = checkOptions('options', options);
    const limit = checkInt('options.limit', o.limit, { min: 0, max: L.maxClaimLimit });
    const { leaseMs, maxAttempts, tx, limits } = this.checkClaimOptions(o);
    return this.run(tx, async (q) => {
      const { rows } = await query<ClaimRow>(q, tx === undefined, this.sql.completeAndClaim, [
        list,
        items,
        tokens,
        ctids,
        limit,
        leaseMs,
        maxAttempts,
        limits.perKey,
        limits.list,
      ]);
      const row = rows[0]!;
      const claims = toClaims(row);
      this.observe(list, row);
      let died = row.dead.length;
      let nextMs = row.next_ms;
      // Items retired as dead left gaps in the batch: fill them (bounded, so a list full of
      // dead-on-arrival items cannot keep us here).
      for (let round = 0; died > 0 && claims.length < limit && round < 10; round++) {
        const more = await this.claimOnce(
          q,
          tx === undefined,
          list,
          limit - claims.length,
          leaseMs,
          maxAttempts,
          limits,
        );
        claims.push(...more.claims);
        died = more.died;
        nextMs = more.nextMs;
      }
      // The items are distinct (checkClaims), and so are the completed ones among them.
      return {
        count: row.completed.length,
        stale: stale(items, row.completed),
        claims,
        nextSlotMs: claims.length < limit && nextMs !== null ? nextMs : undefined,
      };
    });
  }

  /** See {@link AttemptList.complete}. */
  async complete(list: string, claims: ClaimRef[], options: SettleOptions): Promise<SettleResult> {
    const r = await this.settle(list, claims, options, this.sql.complete, []);
    return { count: r.count, stale: r.stale };
  }

  /** See {@link AttemptList.release}. */
  async release(list: string, claims: ClaimRef[], options: SettleOptions): Promise<SettleResult> {
    const r = await this.settle(list, claims, options, this.sql.release, []);
    return { count: r.count, stale: r.stale };
  }

  /** See {@link AttemptList.fail}. */
  async fail(list: string, claims: ClaimRef[], options: FailOptions): Promise<FailResult> {
    const o = checkOptions('options', options);
    const retryDelayMs = optionalInt(
      'options.retryDelayMs',
      o.retryDelayMs,
      { min: 0, max: L.maxLeaseMs },
      0,
    );
    const maxAttempts = optionalInt(
      'options.maxAttempts',
      o.maxAttempts,
      { min: 1, max: NO_LIMIT },
      this.maxAttempts,
    );
    const r = await this.settle(list, claims, o, this.sql.fail, [retryDelayMs, maxAttempts]);
    return {
      count: r.count,
      stale: r.stale,
      dead: r.rows.filter((x) => x.dead).map((x) => x.item),
    };
  }

  /** See {@link AttemptList.extend}. */
  async extend(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions & { leaseMs: number },
  ): Promise<ExtendResult> {
    const o = checkOptions('options', options);
    const leaseMs = checkInt('options.leaseMs', o.leaseMs, { min: 1, max: L.maxLeaseMs });
    const r = await this.settle(list, claims, o, this.sql.extend, [leaseMs]);
    // The extend wrote new row versions: point the claims' hints at them, so a later complete
    // still reaches its rows directly.
    const moved = new Map(r.rows.map((x) => [x.item, x.ctid]));
    for (const c of claims) {
      const ctid = moved.get(c.item);
      if (ctid !== undefined) IssuedClaim.rehint(c, ctid);
    }
    return { count: r.count, stale: r.stale, leaseUntil: r.rows[0]?.run_at ?? undefined };
  }

  private checkClaimOptions(o: {
    leaseMs?: unknown;
    maxAttempts?: unknown;
    tx?: unknown;
    perKeyConcurrency?: unknown;
    concurrency?: unknown;
  }) {
    return {
      limits: checkClaimLimits(o),
      leaseMs: checkInt('options.leaseMs', o.leaseMs, { min: 1, max: L.maxLeaseMs }),
      maxAttempts: optionalInt(
        'options.maxAttempts',
        o.maxAttempts,
        { min: 1, max: NO_LIMIT },
        this.maxAttempts,
      ),
      tx: checkTx(o.tx),
    };
  }

  private async claimOn(
    q: Queryable,
    retry: boolean,
    list: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
    limits: ClaimLimitParams,
  ): Promise<Claim[]> {
    const claims: Claim[] = [];
    for (let round = 0; round < 10 && claims.length < limit; round++) {
      const r = await this.claimOnce(
        q,
        retry,
        list,
        limit - claims.length,
        leaseMs,
        maxAttempts,
        limits,
      );
      claims.push(...r.claims);
      if (r.died === 0) break;
    }
    return claims;
  }

  private async claimOnce(
    q: Queryable,
    retry: boolean,
    list: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
    limits: ClaimLimitParams,
  ) {
    const { rows } = await query<ClaimRow>(q, retry, this.sql.claim, [
      list,
      [],
      '',
      '',
      limit,
      leaseMs,
      maxAttempts,
      limits.perKey,
      limits.list,
    ]);
    const row = rows[0]!;
    this.observe(list, row);
    return { claims: toClaims(row), died: row.dead.length, nextMs: row.next_ms };
  }

  private async settle(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions,
    sql: string,
    /** Parameters after the claims' ($1 list, $2 items, $3 tokens, $4 ctid hints). */
    extra: unknown[],
  ): Promise<SettleResult & { rows: SettleRow[] }> {
    checkList(list);
    const { items, tokens, ctids } = checkClaims(claims);
    const o = checkOptions('options', options);
    const tx = checkTx(o.tx);
    const strict = checkBoolean('options.strict', o.strict, false);
    if (items.length === 0) return { count: 0, stale: [], rows: [] };
    const apply = async (q: Queryable, retry = false) => {
      const { rows } = await query<SettleRow>(q, retry, sql, [
        list,
        items,
        tokens,
        ctids,
        ...extra,
      ]);
      const missed = stale(
        items,
        rows.map((r) => r.item),
      );
      if (strict && missed.length > 0) {
        throw new StaleTokenError(
          `${missed.length} of ${items.length} claims are stale (first: ${JSON.stringify(missed[0]!.slice(0, 100))}); nothing was applied`,
        );
      }
      return { count: rows.length, stale: missed, rows };
    };
    // strict needs all-or-nothing: run it in a transaction (a savepoint inside the caller's).
    return strict
      ? this.run(tx, (q) => withTransaction(q, (t) => apply(t)))
      : this.run(tx, (q) => apply(q, tx === undefined));
  }

  /** Emits what a claim statement saw: taken-over expired leases, items retired as dead. */
  private observe(list: string, row: ClaimRow): void {
    if (row.expired.length > 0) this.events.emit('claim:expired', { list, items: row.expired });
    if (row.dead.length > 0) this.events.emit('claim:dead', { list, items: row.dead });
  }

  /**
   * Migrates on first use, runs `fn` on the caller's transaction or the list's queryable,
   * classifies errors: the runner's hot-path `exec` (see the class comment).
   */
  private run<T>(tx: Queryable | undefined, fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.statements.exec(tx, fn);
  }
}

/**
 * The deadlock retry of a claim or settlement statement: 5 tries in all, 5 .. 40 ms apart. Only
 * `conflict`: a claim is safe to run again after the server rolled it back, not after the link
 * broke mid-statement (it may have committed, and its items would stay leased to nobody).
 */
const DEADLOCK_RETRY: Readonly<RetryOptions> = Object.freeze({
  retries: 4,
  baseMs: 5,
  maxMs: 40,
  retryOn: Object.freeze(['conflict'] as const),
});

/**
 * Runs one statement; when it is the whole transaction (no caller transaction), retries it after a
 * deadlock. Claims lock rows with SKIP LOCKED, but PostgreSQL still waits, whatever the wait
 * policy, when it locks a row whose newer version another transaction holds ("while locking
 * updated version of tuple"), and two claimers can each hold what the other waits for. The
 * statement rolled back as a whole, so running it again is safe.
 *
 * The first try runs outside {@link withRetry}, which only takes over after a failure: a
 * successful claim pays for no closure, options or retry bookkeeping.
 */
async function query<R extends pg.QueryResultRow>(
  q: Queryable,
  retry: boolean,
  sql: string,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await q.query<R>(sql, values);
  } catch (err) {
    if (!retry) throw err;
    return withRetry(
      (attempt) => (attempt === 1 ? Promise.reject(err) : q.query<R>(sql, values)),
      DEADLOCK_RETRY,
    );
  }
}

/** The items of `sent` (distinct) missing from `applied` (a subset of them). */
function stale(sent: string[], applied: string[]): string[] {
  if (applied.length === sent.length) return [];
  const done = new Set(applied);
  return sent.filter((i) => !done.has(i));
}

/** A row a settle statement applied to (fail adds `dead`, extend the new lease end and ctid). */
interface SettleRow extends pg.QueryResultRow {
  item: string;
  dead?: boolean;
  run_at?: Date | null;
  ctid?: string;
}

function toClaims(row: ClaimRow): Claim[] {
  const { items, token, lease_until: leaseUntil } = row;
  if (items.length === 0) return []; // nothing claimed: no token, no lease end
  const ctids = unpack(row.ctids);
  const attempts = unpack(row.attempts);
  const until = leaseUntil.getTime();
  return items.map(
    (item, i) => new IssuedClaim(item, token, Number(attempts[i]), new Date(until), ctids[i]!),
  );
}
