-- Attempt lists: completions run before the claim, and find their rows by ctid.
--
-- 1. A deadlock (40P01) under concurrent completeAndClaim, seen in the lists-claim benchmark:
--    in list_complete_and_claim of 0001/0007 the completions were a data-modifying CTE read by
--    the final SELECT, so they ran after the claim had locked its new batch. A claim can also
--    hold a lock on a row it does not take: when the row was claimed by another worker after
--    this statement's snapshot, FOR UPDATE locks its newest version, re-checks it, finds it
--    leased and skips it, but keeps the lock to the end of the transaction. Worker A, completing
--    such a row, waits for B; B, completing a row A's claim locked the same way, waits for A.
--    Now the completions are a statement of their own, run first: while a call waits to delete
--    its rows it holds no lock anyone else waits for (a claim never waits: SKIP LOCKED), so no
--    cycle can form.
-- 2. Completions by ctid. A claim returns the ctid of each row version it wrote; the client
--    keeps it with the claim object and passes it back, and the delete reaches the row directly
--    instead of through the primary key (one B-tree descent per item saved). The ctid is only a
--    hint: the row must still match list, item and token, so a wrong or outdated ctid (the row
--    was extended, VACUUM FULL moved it, the caller built the claim itself) finds nothing, and
--    those items take the primary-key path as before.
CREATE FUNCTION {{schema}}.list_complete_and_claim(
  p_list text,
  p_items text[],
  p_tokens bigint[],
  p_ctids tid[],
  p_limit integer,
  p_lease_ms double precision,
  p_max_attempts integer
)
RETURNS TABLE (
  o_completed text[],     -- items of p_items deleted (their token was current)
  o_items text[],         -- claimed items ...
  o_ctids tid[],          -- ... where their new row versions are (hints for the completion)
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
DECLARE
  v_done text[] := '{}';
BEGIN
  IF cardinality(p_items) > 0 THEN
    WITH done AS (
      DELETE FROM {{schema}}.list_items AS i
      USING unnest(p_items, p_tokens, p_ctids) AS d(item, token, id)
      WHERE i.ctid = d.id AND i.list = p_list AND i.item = d.item AND i.token = d.token
      RETURNING i.item
    )
    SELECT coalesce(array_agg(done.item), '{}') INTO v_done FROM done;
    IF cardinality(v_done) < cardinality(p_items) THEN
      -- The rest through the primary key (see 0001 for why the probe is a LATERAL subquery).
      WITH done AS (
        DELETE FROM {{schema}}.list_items AS i
        USING unnest(p_items, p_tokens) AS d(item, token),
          LATERAL (
            SELECT x.ctid AS id FROM {{schema}}.list_items AS x
            WHERE x.list = p_list AND x.item = d.item AND x.token = d.token
            LIMIT 1
          ) AS f
        WHERE i.ctid = f.id AND NOT (d.item = ANY (v_done))
        RETURNING i.item
      )
      SELECT v_done || coalesce(array_agg(done.item), '{}') INTO v_done FROM done;
    END IF;
  END IF;
  IF p_limit <= 0 THEN
    RETURN QUERY SELECT v_done, '{}'::text[], '{}'::tid[], '{}'::integer[], NULL::bigint,
      NULL::timestamptz, '{}'::text[], '{}'::text[];
    RETURN;
  END IF;
  RETURN QUERY
  WITH cand AS (
    SELECT c.ctid AS id, c.token IS NOT NULL AS expired FROM {{schema}}.list_items AS c
    WHERE c.list = p_list AND c.run_at <= statement_timestamp()
      AND (c.leased_until IS NULL OR c.leased_until <= statement_timestamp())
    ORDER BY c.run_at
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  ),
  tok AS (
    SELECT nextval(format('%I.list_token_seq', {{schema_literal}})::regclass) AS token
  ),
  claimed AS (
    -- As in 0007: a HOT update, no indexed column changes unless the item dies.
    UPDATE {{schema}}.list_items AS i SET
      attempts = i.attempts + (i.token IS NOT NULL)::int,
      token = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                   ELSE tok.token END,
      run_at = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                    ELSE i.run_at END,
      leased_until = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                    ELSE statement_timestamp() + p_lease_ms * interval '1 millisecond' END
    FROM cand, tok
    WHERE i.ctid = cand.id
    RETURNING i.item, i.ctid AS id, i.attempts, i.token, cand.expired
  )
  SELECT
    v_done,
    coalesce(array_agg(c.item) FILTER (WHERE c.token IS NOT NULL), '{}'),
    coalesce(array_agg(c.id) FILTER (WHERE c.token IS NOT NULL), '{}'),
    coalesce(array_agg(c.attempts) FILTER (WHERE c.token IS NOT NULL), '{}'),
    (SELECT t.token FROM tok AS t),
    statement_timestamp() + p_lease_ms * interval '1 millisecond',
    coalesce(array_agg(c.item) FILTER (WHERE c.expired), '{}'),
    coalesce(array_agg(c.item) FILTER (WHERE c.token IS NULL), '{}')
  FROM claimed AS c;
END
$fn$;

-- Processes still running the previous release call the six-argument function: give it the
-- same order (completions first) by delegating to the new one without ctids.
CREATE OR REPLACE FUNCTION {{schema}}.list_complete_and_claim(
  p_list text,
  p_items text[],
  p_tokens bigint[],
  p_limit integer,
  p_lease_ms double precision,
  p_max_attempts integer
)
RETURNS TABLE (
  o_completed text[],
  o_items text[],
  o_attempts integer[],
  o_token bigint,
  o_lease_until timestamptz,
  o_expired text[],
  o_dead text[]
)
LANGUAGE sql
VOLATILE
AS $fn$
  SELECT f.o_completed, f.o_items, f.o_attempts, f.o_token, f.o_lease_until, f.o_expired, f.o_dead
  FROM {{schema}}.list_complete_and_claim(p_list, p_items, p_tokens, NULL::tid[], p_limit,
    p_lease_ms, p_max_attempts) AS f;
$fn$;
