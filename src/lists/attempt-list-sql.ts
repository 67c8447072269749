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
  // Claims go through the list_complete_and_claim function (migrations 0001, 0008): it pins
  // the ordered index walk a queue needs (see the comment in 0001), completes the claims passed
  // in before it claims (0008: no deadlock), and returns each claimed row's ctid, which the next
  // completion passes back as a hint ($4; NULL where unknown).
  // Tokens and ctids travel packed into one text each (see `packed`).
  const claimFn = `SELECT o_completed AS completed, o_items AS items,
      array_to_string(o_ctids, ' ') AS ctids, array_to_string(o_attempts, ' ') AS attempts,
      o_token::text AS token, o_lease_until AS lease_until, o_expired AS expired, o_dead AS dead
    FROM ${s}.list_complete_and_claim($1::text, $2::text[], ${packed.tokens(3)}, ${packed.ctids(4)},
      $5::int, $6::float8, $7::int)`;
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
  const notifying = `WITH n AS (SELECT pg_notify(${notifyChannel(schema)}, ''))`;
  // Scheduled inserts (migration 0012): the due time from runAt (a timestamptz, or NULL) or
  // delayMs (on the server clock); neither, or a delay of 0, is '-infinity', ready, so unscheduled
  // items keep sharing one claim-index key (see 0001).
  const dueAt = (runAt: string, delayMs: string) =>
    `CASE WHEN ${runAt} IS NOT NULL THEN ${runAt}
      WHEN ${delayMs} > 0 THEN statement_timestamp() + ${delayMs} * interval '1 millisecond'
      ELSE '-infinity'::timestamptz END`;
  // One schedule for the whole batch: $3 runAt, $4 delayMs, $5 priority.
  const scheduled = `INSERT INTO ${t} (list, item, run_at, priority)
    SELECT $1::text, unnest($2::text[]), ${dueAt('$3::timestamptz', '$4::float8')}, $5::int2`;
  // One schedule per item: $3, $4, $5 are arrays parallel to the items of $2.
  const each = `INSERT INTO ${t} (list, item, run_at, priority)
    SELECT $1::text, d.item, ${dueAt('d.run_at', 'd.delay_ms')}, d.priority`;
  const eachFrom = `unnest($2::text[], $3::timestamptz[], $4::float8[], $5::int2[])
    AS d(item, run_at, delay_ms, priority)`;
  return {
    // One notification per statement (PostgreSQL folds identical ones of a transaction into
    // one), on the channel workChannel() (worker.ts) derives, fired at commit: it wakes idle
    // workers. Never sent on the claim path; which inserts notify: insert-notifications.ts.
    insert: `${notifying}
      INSERT INTO ${t} (list, item) SELECT $1::text, unnest($2::text[]) FROM n ON CONFLICT DO NOTHING`,
    insertQuiet: `INSERT INTO ${t} (list, item) SELECT $1::text, unnest($2::text[]) ON CONFLICT DO NOTHING`,
    // A scheduled insert notifies as a plain one does: an item due later wakes workers for
    // nothing (coalesced, so cheap); they pick it up by polling once it is due.
    insertScheduled: {
      insert: `${notifying} ${scheduled} FROM n ON CONFLICT DO NOTHING`,
      insertQuiet: `${scheduled} ON CONFLICT DO NOTHING`,
    },
    insertEach: {
      insert: `${notifying} ${each} FROM n, ${eachFrom} ON CONFLICT DO NOTHING`,
      insertQuiet: `${each} FROM ${eachFrom} ON CONFLICT DO NOTHING`,
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
    nuke: `DELETE FROM ${t}`,
    table: t,
    claim: claimFn,
    completeAndClaim: claimFn,
    // complete() is the claim function with nothing to claim: same pinned plan.
    complete: `SELECT unnest(o_completed) AS item
      FROM ${s}.list_complete_and_claim($1::text, $2::text[], ${packed.tokens(3)},
        ${packed.ctids(4)}, 0, 1, 1)`,
    release: `UPDATE ${t} AS i SET token = NULL, leased_until = NULL, run_at = '-infinity'
      ${byToken} RETURNING i.item`,
    fail: `UPDATE ${t} AS i SET attempts = i.attempts + 1, token = NULL, leased_until = NULL,
        run_at = CASE WHEN i.attempts + 1 >= $6::int THEN NULL
                      WHEN $5::float8 <= 0 THEN '-infinity'::timestamptz
                      ELSE statement_timestamp() + $5::float8 * interval '1 millisecond' END
      ${byToken} RETURNING i.item, i.run_at IS NULL AS dead`,
    // The lease end lives in leased_until (migration 0007): extending is a HOT update too. It
    // returns where each row's new version is, so the claims keep a current hint.
    extend: `UPDATE ${t} AS i SET leased_until = ${leaseEnd}
      ${byToken} AND i.run_at IS NOT NULL
      RETURNING i.item, i.leased_until AS run_at, i.ctid::text AS ctid`,
    deadPage: `SELECT item, attempts FROM ${t}
      WHERE list = $1::text AND run_at IS NULL AND item > $2::text ORDER BY item LIMIT $3::int`,
    requeueAll: `UPDATE ${t} SET attempts = 0, token = NULL, leased_until = NULL, run_at = '-infinity' WHERE list = $1::text AND run_at IS NULL`,
    requeue: `UPDATE ${t} SET attempts = 0, token = NULL, leased_until = NULL, run_at = '-infinity'
      WHERE list = $1::text AND item = ANY($2::text[]) AND run_at IS NULL`,
  };
}

/** The statements of one schema's attempt lists (see {@link buildSql}). */
export type AttemptListSql = ReturnType<typeof buildSql>;
