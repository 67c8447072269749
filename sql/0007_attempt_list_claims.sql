-- Attempt lists, claims as HOT updates. Migration 0001 kept a claim's lease end in run_at, which
-- list_items_claim indexes: every claim was a non-HOT update writing new entries in both indexes,
-- then the complete deleted the row (each item written twice with its index entries). The lease
-- end now lives in leased_until, which no index and no partial-index predicate mentions: a claim
-- changes no indexed column, so PostgreSQL can make it a HOT update (heap only, on the same page,
-- in the room fillfactor leaves) and writes no index entry.
--
-- States (run_at as in 0001, plus):
--   leased_until  NULL, or the end of the current lease (token set). A row is claimable when
--                 run_at <= now() and (leased_until IS NULL or leased_until <= now()).
-- Leased rows keep their run_at ('-infinity' for ready items), so they stay at the head of
-- list_items_claim and a claim steps over them by a heap filter: at most the items held by live
-- claims (workers x limit), not the backlog. Rows leased before this migration (lease end in
-- run_at, leased_until NULL) keep working: they become claimable when run_at passes.
ALTER TABLE {{schema}}.list_items ADD COLUMN leased_until timestamptz;

-- A HOT update must find room for the new row version on the same page. Claims take a batch of
-- neighbouring rows (a page's worth) at once, and nothing on that page is prunable yet, so the
-- page needs room for a new version of each of its rows, and a claimed version is 16 bytes longer
-- (token and leased_until set): a page may be filled to about 1 / (2 + 16 / row size) at most.
-- Measured with ~70-byte rows: at 0001's fillfactor 90, 10% of claims were HOT; at 50, 83%; at
-- 40, all of them. Only pages written from now on get it. The cost: a waiting backlog takes about
-- 2.3 times the heap pages (the indexes are unchanged).
ALTER TABLE {{schema}}.list_items SET (fillfactor = 40);

CREATE OR REPLACE FUNCTION {{schema}}.list_complete_and_claim(
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
      -- Leased rows keep their place at the head of the index: skipped here, by a heap filter.
      AND (c.leased_until IS NULL OR c.leased_until <= statement_timestamp())
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
      -- run_at keeps its value unless the item dies: no indexed column changes, so the claim is
      -- a HOT update that writes no index entries.
      run_at = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                    ELSE i.run_at END,
      leased_until = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                    ELSE statement_timestamp() + p_lease_ms * interval '1 millisecond' END
    FROM cand, tok
    WHERE i.ctid = cand.id
    RETURNING i.item, i.attempts, i.token, cand.expired
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
