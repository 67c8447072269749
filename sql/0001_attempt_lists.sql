-- Attempt lists: named lists of string items with attempt counts, claimable with leases.
--
-- One row per (list, item). The claim state lives in two columns:
--   run_at  '-infinity'  ready: never claimed, released, or failed without a retry delay
--           a timestamp  leased until then (token set), or waiting out a retry delay (token null);
--                        claimable once it is <= now() (server clock)
--           NULL         dead: reached maxAttempts; never claimed until requeued
--   token   the current claim's token; a complete/fail/release/extend must present it
--
-- Why '-infinity' rather than the insert time for ready items: every ready item of a list then
-- shares one key in list_items_claim, so B-tree deduplication stores them as posting lists in
-- heap order. When claims take items from the head, the index entries they leave behind die in
-- whole posting lists that scans skip cheaply, instead of one dead entry per claimed item that
-- every later claim would have to step over until VACUUM runs (measured: 500k completed items
-- with distinct timestamps made each claim read ~1,900 index pages; with one shared key, ~70).
CREATE SEQUENCE {{schema}}.list_token_seq;

CREATE TABLE {{schema}}.list_items (
  list text COLLATE "C" NOT NULL,
  item text COLLATE "C" NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  run_at timestamptz DEFAULT '-infinity',
  token bigint,
  PRIMARY KEY (list, item)
) WITH (
  -- Room on each page for HOT updates of attempts (increment) without touching the indexes.
  fillfactor = 90,
  -- A queue table churns: vacuum it after a small fraction of its rows died, without throttling.
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.05,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);

-- Claims: claimable items of a list, ready ones first; dead items (run_at NULL) are not indexed.
CREATE INDEX list_items_claim ON {{schema}}.list_items (list, run_at) WHERE run_at IS NOT NULL;

-- Dead items of a list, in byte order, for listing and requeueing.
CREATE INDEX list_items_dead ON {{schema}}.list_items (list, item) WHERE run_at IS NULL;

-- Completes claims (deletes the items whose token matches) and claims the next batch, in one
-- statement. claim() passes no completions; completeAndClaim() both.
--
-- The planner settings pin the plan a queue needs: walk list_items_claim in order, stop at
-- p_limit, and reach each claimed or completed row through the primary key (nested loops).
-- Without them the planner picks plans that read the whole list on every call: a bitmap scan
-- plus sort when a just-imported list is taken for a few rows (stale statistics; measured 66 ms
-- for 100 instead of ~1 ms), or a merge join over the primary key for a generic plan, where
-- p_limit and the arrays are unknown (20 ms). PL/pgSQL keeps the plan across calls; a SQL
-- function would re-plan on every call (measured ~0.5 ms of a ~2.5 ms round trip).
CREATE FUNCTION {{schema}}.list_complete_and_claim(
  p_list text,
  p_items text[],
  p_tokens bigint[],
  p_limit integer,
  p_lease_ms double precision,
  p_max_attempts integer
)
-- One row of arrays rather than a row per item: the batch shares its token and lease end, and a
-- single row costs the server one output call per column instead of one per item.
RETURNS TABLE (
  o_completed text[],     -- items of p_items deleted (their token was current)
  o_items text[],         -- claimed items ...
  o_attempts integer[],   -- ... their attempts
  o_token bigint,         -- the token of every claimed item
  o_lease_until timestamptz,
  o_expired text[],       -- items taken over from an expired lease (claimed or retired)
  o_dead text[]           -- items retired at p_max_attempts instead of being claimed
)
LANGUAGE plpgsql
VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
BEGIN
  RETURN QUERY
  WITH done AS (
    -- One primary-key probe per completed item, forced: the LATERAL subquery (LIMIT 1 keeps it
    -- from being flattened) can only run inside a loop over the input. A plain join lets the
    -- planner walk the whole list instead when its statistics take it for a few rows (measured:
    -- 150 ms per call on a fresh 4,000-item list).
    DELETE FROM {{schema}}.list_items AS i
    USING unnest(p_items, p_tokens) AS d(item, token),
      LATERAL (
        SELECT x.ctid AS id FROM {{schema}}.list_items AS x
        WHERE x.list = p_list AND x.item = d.item AND x.token = d.token
        LIMIT 1
      ) AS f
    WHERE i.ctid = f.id
    RETURNING i.item
  ),
  cand AS (
    -- The locked row's ctid: the update below reaches it directly, without a second walk of
    -- the primary key. (If the version we locked is newer than this statement's snapshot, the
    -- update skips it and the item simply stays claimable: never handed out twice.)
    SELECT c.ctid AS id, c.token IS NOT NULL AS expired FROM {{schema}}.list_items AS c
    WHERE c.list = p_list AND c.run_at <= statement_timestamp()
    ORDER BY c.run_at
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  ),
  tok AS (
    SELECT nextval(format('%I.list_token_seq', {{schema_literal}})::regclass) AS token
  ),
  claimed AS (
    UPDATE {{schema}}.list_items AS i SET
      -- A token still set on a claimable row means its lease expired: that was an attempt.
      attempts = i.attempts + (i.token IS NOT NULL)::int,
      token = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                   ELSE tok.token END,
      run_at = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                    ELSE statement_timestamp() + p_lease_ms * interval '1 millisecond' END
    FROM cand, tok
    WHERE i.ctid = cand.id
    RETURNING i.item, i.attempts, i.token, i.run_at, cand.expired
  )
  SELECT
    (SELECT coalesce(array_agg(d.item), '{}') FROM done AS d),
    coalesce(array_agg(c.item) FILTER (WHERE c.token IS NOT NULL), '{}'),
    coalesce(array_agg(c.attempts) FILTER (WHERE c.token IS NOT NULL), '{}'),
    (SELECT t.token FROM tok AS t),
    statement_timestamp() + p_lease_ms * interval '1 millisecond',
    coalesce(array_agg(c.item) FILTER (WHERE c.expired), '{}'),
    coalesce(array_agg(c.item) FILTER (WHERE c.token IS NULL), '{}')
  FROM claimed AS c;
END
$fn$;

-- A keyset page in byte order. Pinned to the ordered primary-key walk for the same reason as the
-- claim: with stale statistics (a list loaded a moment ago) the planner otherwise reads and sorts
-- the rest of the list to return 1,000 rows.
CREATE FUNCTION {{schema}}.list_page(p_list text, p_after text, p_count integer)
RETURNS TABLE (o_item text, o_attempts integer)
LANGUAGE plpgsql
STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $fn$
BEGIN
  RETURN QUERY
  SELECT i.item, i.attempts FROM {{schema}}.list_items AS i
  WHERE i.list = p_list AND i.item > p_after
  ORDER BY i.item
  LIMIT p_count;
END
$fn$;
