import type { Queryable } from '../core/index.js';

/**
 * Inserts of one AttemptList notify a list's workers at most once per this many ms. A transaction
 * that notifies takes a database-wide lock at commit, so a notification per insert serializes
 * concurrent single-item inserters (measured: 0.30-0.44x the inserts/s of not notifying, 8
 * callers, each insert its own transaction).
 */
export const NOTIFY_COALESCE_MS = 20;

/** The two inserts and the lone notification of a list (built by buildSql). */
export interface InsertStatements {
  /** Inserts and notifies the list's channel, in one statement: fires at commit. */
  insert: string;
  /** Inserts only. */
  insertQuiet: string;
  /** Notifies the list's channel ($1: the list). */
  notify: string;
}

/**
 * Decides which inserts notify. The first insert into a list after a quiet spell notifies in its
 * own statement (so it fires at its commit); later ones within NOTIFY_COALESCE_MS stay quiet, and
 * once one of those has completed, one trailing notification goes out at the end of the window,
 * sent after that insert returned (so after its commit), never before. An insert inside the
 * caller's transaction always notifies in its statement: only its commit may wake workers, and
 * when that is is the caller's. A lost notification costs latency (the worker's poll), never items.
 */
export class InsertNotifications {
  private readonly notifiedAt = new Map<string, number>();
  private readonly trailing = new Set<string>();

  constructor(
    private readonly q: Queryable,
    private readonly statements: InsertStatements,
  ) {}

  /**
   * The insert statement for `list`, of `pair` (default: the plain insert): `quiet` ones must
   * report `settled(list)` once they succeed.
   */
  choose(
    list: string,
    inCallerTx: boolean,
    pair: Pick<InsertStatements, 'insert' | 'insertQuiet'> = this.statements,
  ): { sql: string; quiet: boolean } {
    if (inCallerTx) return { sql: pair.insert, quiet: false };
    const now = performance.now();
    const last = this.notifiedAt.get(list);
    if (last !== undefined && now - last < NOTIFY_COALESCE_MS) {
      return { sql: pair.insertQuiet, quiet: true };
    }
    // Bounded: a process inserting into very many lists forgets, and so notifies a little more.
    if (this.notifiedAt.size >= 10_000) this.notifiedAt.clear();
    this.notifiedAt.set(list, now);
    return { sql: pair.insert, quiet: false };
  }

  /** A quiet insert into `list` completed: make sure a notification follows it. */
  settled(list: string): void {
    if (this.trailing.has(list)) return;
    this.trailing.add(list);
    const last = this.notifiedAt.get(list) ?? performance.now();
    const delay = Math.max(0, last + NOTIFY_COALESCE_MS - performance.now());
    setTimeout(() => {
      this.trailing.delete(list);
      this.notifiedAt.set(list, performance.now());
      // A failure here (a pool ended meanwhile, a dropped connection) only delays the workers.
      this.q.query(this.statements.notify, [list]).catch(() => undefined);
    }, delay).unref();
  }
}
