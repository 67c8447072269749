import { quoteIdent, quoteLiteral } from '../core/index.js';

/** Marks a claim without a ctid hint in a packed list (NULL on the server). */
export const NO_CTID = 'n';

/**
 * Tokens (digits) and ctids (`(block,offset)`) never hold a space, so they travel as one text
 * each way, split and joined on the server (`string_to_array($n, ' ', 'n')`, `array_to_string`),
 * instead of as arrays: node-postgres' array escaping and parsing, per element, were ~10% of a
 * busy worker's CPU.
 */
export const packed = {
  tokens: (n: number) => `string_to_array($${n}::text, ' ')::bigint[]`,
  ctids: (n: number) => `string_to_array($${n}::text, ' ', '${NO_CTID}')::tid[]`,
};

/** Splits a text joined by {@link packed}'s server side (`''` is the empty list). */
export function unpack(text: string): string[] {
  return text === '' ? [] : text.split(' ');
}

/** SQL of the channel of the list in $1 of `schema`: the same name as worker.ts' workChannel(). */
export function notifyChannel(schema: string): string {
  return `'pgcoord_work_' || md5(${quoteLiteral(`${schema}.`)} || $1::text)`;
}

/**
 * The runtime SQL of {@link AttemptList}, built once per schema. Values are always parameters;
 * the schema enters only through quoteIdent. Claims and pages go through the functions of
 * migration 0001, which pin their plans.
 */
export function buildSql(schema: string) {
  const s = quoteIdent(schema);
  const t = `${s}.list_items`;
  const leaseEnd = `statement_timestamp() + $5::float8 * interval '1 millisecond'`;
  // Claims go through the list_claim function (migration 0014; before it list_complete_and_claim
  // of 0001, 0008, 0012): it pins the ordered index walk a queue needs (see the comment in 0001),
  // completes the claims passed in before it claims (0008: no deadlock), returns each claimed
  // row's ctid, which the next completion passes back as a hint ($4; NULL where unknown), and on
  // a list with limits claims through list_claim_limited ($8, $9: a claim's own tighter limits).
  // Tokens and ctids travel packed into one text each (see `packed`). next_ms: how long until
  // the list may have something claimable again, on the server clock (NULL: nothing scheduled).
  const claimFn = `SELECT o_completed AS completed, o_items AS items,
      array_to_string(o_ctids, ' ') AS ctids, array_to_string(o_attempts, ' ') AS attempts,
      o_token::text AS token, o_lease_until AS lease_until, o_expired AS expired, o_dead AS dead,
      greatest(0, extract(epoch FROM o_next_at - clock_timestamp()) * 1000)::float8 AS next_ms
    FROM ${s}.list_claim($1::text, $2::text[], ${packed.tokens(3)}, ${packed.ctids(4)},
      $5::int, $6::float8, $7::int, $8::int, $9::int)`;
  // Rows of $1 whose (item, token) pair is in ($2, $3), for release, fail and extend. Each pair
  // first tries the row at its ctid hint ($4, NULL where unknown), then, if that finds nothing
  // (no hint, or the row moved), one primary-key probe; LIMIT 1 stops at the first branch that
  // answers, and the LATERAL subquery keeps the probe inside the loop over the input (see
  // list_complete_and_claim in migration 0001 for why). The row must match list, item and token
  // either way, so a wrong hint finds nothing. A concurrent write to the same row (say an
  // increment) makes the row report stale rather than be applied: never applied twice.
  const byToken = `FROM unnest($2::text[], ${packed.tokens(3)}, ${packed.ctids(4)}) AS d(item, token, id),
      LATERAL (
        (SELECT x.ctid AS id FROM ${t} AS x
          WHERE x.ctid = d.id AND x.list = $1::text AND x.item = d.item AND x.token = d.token)
        UNION ALL
        (SELECT x.ctid AS id FROM ${t} AS x
          WHERE x.list = $1::text AND x.item = d.item AND x.token = d.token)
        LIMIT 1
      ) AS f
      WHERE i.ctid = f.id`;
  // Scheduled inserts (migration 0012): the due time from runAt (a timestamptz, or NULL) or
  // delayMs (on the server clock); neither, or a delay of 0, is '-infinity', ready, so unscheduled
  // items keep sharing one claim-index key (see 0001).
  const dueAt = (runAt: string, delayMs: string) =>
    `CASE WHEN ${runAt} IS NOT NULL THEN ${runAt}
      WHEN ${delayMs} > 0 THEN statement_timestamp() + ${delayMs} * interval '1 millisecond'
      ELSE '-infinity'::timestamptz END`;
  // Whether list $1 has limits (migration 0014): its settlements then go through
  // list_settle_limited, which keeps the lease entries the limits count.
  const limited = `EXISTS (SELECT 1 FROM ${s}.list_settings AS ls WHERE ls.list = $1::text
      AND (ls.key_concurrency IS NOT NULL OR ls.key_rate_limit IS NOT NULL
        OR ls.concurrency IS NOT NULL))`;
  /**
   * A settlement: the fast statement `fast` (an UPDATE ... RETURNING `columns`, guarded to do
   * nothing on a list with limits), or, on a list with limits, list_settle_limited (op, $5, $6)
   * in the same statement. Exactly one of the two acts: the guard and the function's call are
   * the same condition, read by one statement.
   */
  const settle = (fast: string, columns: string, op: number, ms: string, max: string) =>
    `WITH lim AS (SELECT ${limited} AS on),
      fast AS (${fast} AND NOT (SELECT lim.on FROM lim) RETURNING ${columns})
    SELECT * FROM fast
    UNION ALL
    SELECT l.o_item, l.o_dead, l.o_until, l.o_ctid::text
    FROM lim, LATERAL ${s}.list_settle_limited($1::text, ${op}, $2::text[], ${packed.tokens(3)},
      ${ms}, ${max}) AS l
    WHERE lim.on`;
  // The key of each inserted item: the one given ($3, NULL where none), else the list's key rule's
  // first capture group ($4 overrides the stored rule for one import), else on a list with
  // limits '' (no key: see migration 0014). Every key gets its key row, due now unless sooner
  // (a claim moves it on to the key's first due item). The schedule (migration 0012), by
  // `shape`: none ('plain': ready, priority 0); one for the batch ('scheduled': $5 runAt, $6
  // delayMs, $7 priority); or one per item ('each': $5, $6, $7 arrays parallel to $2).
  const insertSchedule = {
    plain: '',
    scheduled: `, ${dueAt('$5::timestamptz', '$6::float8')}, $7::int2`,
    each: `, ${dueAt('u.run_at', 'u.delay_ms')}, u.priority`,
  };
  const insertFrom = {
    plain: 'unnest($2::text[], $3::text[]) AS u(item, key)',
    scheduled: 'unnest($2::text[], $3::text[]) AS u(item, key)',
    each: `unnest($2::text[], $3::text[], $5::timestamptz[], $6::float8[], $7::int2[])
      AS u(item, key, run_at, delay_ms, priority)`,
  };
  const insertSql = (notify: boolean, shape: 'plain' | 'scheduled' | 'each') => `WITH st AS (
        SELECT ls.key_regex, (ls.key_concurrency IS NOT NULL OR ls.key_rate_limit IS NOT NULL
          OR ls.concurrency IS NOT NULL) AS limited
        FROM ${s}.list_settings AS ls WHERE ls.list = $1::text),
      ${notify ? `n AS (SELECT pg_notify(${notifyChannel(schema)}, '')),` : ''}
      ins AS (
        INSERT INTO ${t} (list, item, key${shape === 'plain' ? '' : ', run_at, priority'})
        SELECT $1::text, u.item, coalesce(u.key,
          substring(u.item FROM coalesce($4::text, (SELECT st.key_regex FROM st))),
          CASE WHEN (SELECT st.limited FROM st) THEN '' END)${insertSchedule[shape]}
        FROM ${notify ? 'n, ' : ''}${insertFrom[shape]}
        ON CONFLICT DO NOTHING
        RETURNING key),
      keys AS (
        INSERT INTO ${s}.list_keys AS k (list, key, next_at)
        SELECT $1::text, d.key, statement_timestamp()
        FROM (SELECT DISTINCT ins.key FROM ins WHERE ins.key IS NOT NULL) AS d
        ORDER BY d.key
        -- An upsert, which waits for a claim holding the key row: that claim may be finding the
        -- key empty (it cannot see these items yet) and pushing next_at to 'infinity'; this runs
        -- after it and makes the key due again. (A plain UPDATE ... WHERE next_at > now could
        -- read the old next_at and skip the row: the key would never be due again.)
        ON CONFLICT (list, key) DO UPDATE SET next_at = EXCLUDED.next_at
        WHERE k.next_at > EXCLUDED.next_at)
    SELECT count(*)::int AS n FROM ins`;
  // Requeued items are claimable at once: their keys' rows are due now (a claim skips keys
  // whose next_at is later). Every such key row is written, not only the ones not due: the
  // update then waits for a claim holding the row, which may be setting it to 'infinity' (it
  // cannot see the requeued items yet), and makes it due after it. Returns how many items.
  const requeued = (update: string) => `WITH r AS (${update}),
      keys AS (
        UPDATE ${s}.list_keys AS k SET next_at = least(k.next_at, statement_timestamp())
        FROM (SELECT DISTINCT r.key FROM r WHERE r.key IS NOT NULL) AS d
        WHERE k.list = $1::text AND k.key = d.key)
    SELECT count(*)::int AS n FROM r`;
  return {
    // One notification per statement (PostgreSQL folds identical ones of a transaction into
    // one), on the channel workChannel() (worker.ts) derives, fired at commit: it wakes idle
    // workers. Never sent on the claim path; which inserts notify: insert-notifications.ts.
    // $1 list, $2 items, $3 keys (NULL, or one per item, NULL where none), $4 key rule or NULL;
    // the scheduled statements also take $5 runAt, $6 delayMs, $7 priority (see insertSql).
    insert: insertSql(true, 'plain'),
    insertQuiet: insertSql(false, 'plain'),
    // A scheduled insert notifies as a plain one does: an item due later wakes workers for
    // nothing (coalesced, so cheap); they pick it up by polling once it is due.
    insertScheduled: {
      insert: insertSql(true, 'scheduled'),
      insertQuiet: insertSql(false, 'scheduled'),
    },
    insertEach: {
      insert: insertSql(true, 'each'),
      insertQuiet: insertSql(false, 'each'),
    },
    notify: `SELECT pg_notify(${notifyChannel(schema)}, '')`,
    getOne: `SELECT attempts FROM ${t} WHERE list = $1::text AND item = $2::text`,
    page: `SELECT o_item AS item, o_attempts AS attempts
      FROM ${s}.list_page($1::text, $2::text, $3::int)`,
    increment: `UPDATE ${t} SET attempts = attempts + 1 WHERE list = $1::text AND item = ANY($2::text[])`,
    delete: `DELETE FROM ${t} WHERE list = $1::text AND item = ANY($2::text[])`,
    count: `SELECT count(*) AS n FROM ${t} WHERE list = $1::text`,
    stats: `SELECT count(*) AS total,
        count(*) FILTER (WHERE run_at <= statement_timestamp()
          AND (leased_until IS NULL OR leased_until <= statement_timestamp())) AS claimable,
        count(*) FILTER (WHERE token IS NOT NULL
          AND coalesce(leased_until, run_at) > statement_timestamp()) AS leased,
        count(*) FILTER (WHERE run_at > statement_timestamp() AND token IS NULL) AS delayed,
        count(*) FILTER (WHERE run_at IS NULL) AS dead
      FROM ${t} WHERE list = $1::text`,
    // Work left for this pass: claimable, leased (live or expired), or failed and waiting out a
    // retry delay. Not dead (run_at NULL), not scheduled for later without an attempt yet. Stops
    // at the first such row of the claim index.
    hasWork: `SELECT EXISTS (SELECT 1 FROM ${t} WHERE list = $1::text AND run_at IS NOT NULL
        AND (run_at <= statement_timestamp() OR token IS NOT NULL OR attempts > 0)) AS busy`,
    lists: `SELECT list, count(*) AS size FROM ${t} GROUP BY list ORDER BY list`,
    // Every item goes, and with them their leases: the key rows and list-wide lease entries too.
    nuke: `WITH keys AS (DELETE FROM ${s}.list_keys),
        leases AS (UPDATE ${s}.list_settings SET lease_items = '{}', lease_tokens = '{}')
      DELETE FROM ${t}`,
    table: t,
    claim: claimFn,
    completeAndClaim: claimFn,
    // complete() is the claim function with nothing to claim: same pinned plan.
    complete: `SELECT unnest(o_completed) AS item
      FROM ${s}.list_claim($1::text, $2::text[], ${packed.tokens(3)},
        ${packed.ctids(4)}, 0, 1, 1, NULL, NULL)`,
    release: settle(
      `UPDATE ${t} AS i SET token = NULL, leased_until = NULL, run_at = '-infinity' ${byToken}`,
      `i.item, false AS dead, NULL::timestamptz AS run_at, NULL::text AS ctid`,
      2,
      '0',
      '0',
    ),
    fail: settle(
      `UPDATE ${t} AS i SET attempts = i.attempts + 1, token = NULL, leased_until = NULL,
        run_at = CASE WHEN i.attempts + 1 >= $6::int THEN NULL
                      WHEN $5::float8 <= 0 THEN '-infinity'::timestamptz
                      ELSE statement_timestamp() + $5::float8 * interval '1 millisecond' END
      ${byToken}`,
      `i.item, i.run_at IS NULL AS dead, NULL::timestamptz AS run_at, NULL::text AS ctid`,
      3,
      '$5::float8',
      '$6::int',
    ),
    // The lease end lives in leased_until (migration 0007): extending is a HOT update too. It
    // returns where each row's new version is, so the claims keep a current hint.
    extend: settle(
      `UPDATE ${t} AS i SET leased_until = ${leaseEnd} ${byToken} AND i.run_at IS NOT NULL`,
      `i.item, false AS dead, i.leased_until AS run_at, i.ctid::text AS ctid`,
      4,
      '$5::float8',
      '0',
    ),
    deadPage: `SELECT item, attempts FROM ${t}
      WHERE list = $1::text AND run_at IS NULL AND item > $2::text ORDER BY item LIMIT $3::int`,
    requeueAll:
      requeued(`UPDATE ${t} SET attempts = 0, token = NULL, leased_until = NULL, run_at = '-infinity'
      WHERE list = $1::text AND run_at IS NULL RETURNING key`),
    requeue:
      requeued(`UPDATE ${t} SET attempts = 0, token = NULL, leased_until = NULL, run_at = '-infinity'
      WHERE list = $1::text AND item = ANY($2::text[]) AND run_at IS NULL RETURNING key`),
  };
}

/** The statements of one schema's attempt lists (see {@link buildSql}). */
export type AttemptListSql = ReturnType<typeof buildSql>;
