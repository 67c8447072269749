-- Attempt lists: scheduling on insert (runAt / delayMs) and priorities.
--
-- runAt / delayMs need no new column: an item with token NULL and run_at in the future is
-- already "not claimable before run_at" (a failed item waiting out its retry delay). An insert
-- now may write that run_at itself.
--
-- priority: higher first, then run_at (so ready items, at '-infinity', before due ones). It is
-- set on insert and never changes afterwards (claims, fail, release, requeue keep it), so a
-- claim still changes no indexed column and stays a HOT update (0007). A smallint: -32768 to
-- 32767, default 0. Adding it with a constant default rewrites nothing (existing rows read the
-- default from the catalog).
ALTER TABLE {{schema}}.list_items ADD COLUMN priority smallint NOT NULL DEFAULT 0;

-- The claim index, now in claim order: (list, priority DESC, run_at). Items of one priority still
-- share one key while they are ready ('-infinity'), so 0001's posting-list argument holds for
-- every priority level, and for the common list where everything is priority 0 the index reads
-- exactly as before (one more 2-byte column, absorbed by the alignment of run_at).
DROP INDEX {{schema}}.list_items_claim;
CREATE INDEX list_items_claim ON {{schema}}.list_items (list, priority DESC, run_at)
  WHERE run_at IS NOT NULL;

-- The claim walks the index one priority level at a time. One ordered walk of the whole list
-- (ORDER BY priority DESC, run_at) cannot stop at the first not-yet-due row of a level, since
-- run_at is not the second column: when the head level has fewer claimable rows than the limit,
-- it would read every future row of that level (a million scheduled items: a million index
-- entries per poll of an idle worker). Per level, the condition priority = v AND run_at <= now
-- bounds the range: the walk stops at the level's first future row, as 0001's walk did. Finding
-- the next level down is one index descent (the first entry past the level).
--
-- Cost per level: the level's leased rows (stepped over by a heap filter, as in 0007) and one
-- descent. A list whose claimable items sit under many levels holding only leased or future
-- rows would pay a statement per level; after CLAIM_LEVELS (8) levels the rest is taken by one
-- ordered walk of the lower levels, which steps over their future rows by an index filter
-- (bounded work per level count, O(future rows below) in that rare shape).
CREATE OR REPLACE FUNCTION {{schema}}.list_complete_and_claim(
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
  o_token bigint,         -- the token of every claimed item (NULL when none was)
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
  v_items text[] := '{}';
  v_ids tid[] := '{}';
  v_attempts integer[] := '{}';
  v_expired text[] := '{}';
  v_dead text[] := '{}';
  v_token bigint;
  v_prio smallint;
  v_left integer := p_limit;
  v_levels integer := 0;
  v_lease_until timestamptz := statement_timestamp() + p_lease_ms * interval '1 millisecond';
BEGIN
  -- Completions first, by ctid then primary key: as in 0008.
  IF cardinality(p_items) > 0 THEN
    WITH done AS (
      DELETE FROM {{schema}}.list_items AS i
      USING unnest(p_items, p_tokens, p_ctids) AS d(item, token, id)
      WHERE i.ctid = d.id AND i.list = p_list AND i.item = d.item AND i.token = d.token
      RETURNING i.item
    )
    SELECT coalesce(array_agg(done.item), '{}') INTO v_done FROM done;
    IF cardinality(v_done) < cardinality(p_items) THEN
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
  IF p_limit > 0 THEN
    -- The highest level holding any claimable-or-not row (dead rows are not indexed).
    SELECT c.priority INTO v_prio FROM {{schema}}.list_items AS c
    WHERE c.list = p_list AND c.run_at IS NOT NULL
    ORDER BY c.priority DESC, c.run_at
    LIMIT 1;
    IF FOUND THEN
      v_token := nextval(format('%I.list_token_seq', {{schema_literal}})::regclass);
    END IF;
    WHILE v_prio IS NOT NULL LOOP
      v_levels := v_levels + 1;
      IF v_levels <= 8 THEN
        WITH cand AS (
          -- The locked row's ctid: the update reaches it directly (see 0001).
          SELECT c.ctid AS id, c.token IS NOT NULL AS expired FROM {{schema}}.list_items AS c
          WHERE c.list = p_list AND c.priority = v_prio AND c.run_at <= statement_timestamp()
            AND (c.leased_until IS NULL OR c.leased_until <= statement_timestamp())
          ORDER BY c.run_at
          LIMIT v_left
          FOR UPDATE SKIP LOCKED
        ),
        claimed AS (
          -- As in 0007: a HOT update, no indexed column changes unless the item dies.
          UPDATE {{schema}}.list_items AS i SET
            attempts = i.attempts + (i.token IS NOT NULL)::int,
            token = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                         ELSE v_token END,
            run_at = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                          ELSE i.run_at END,
            leased_until = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts
                                THEN NULL ELSE v_lease_until END
          FROM cand
          WHERE i.ctid = cand.id
          RETURNING i.item, i.ctid AS id, i.attempts, i.token, cand.expired
        )
        SELECT
          v_items || coalesce(array_agg(c.item) FILTER (WHERE c.token IS NOT NULL), '{}'),
          v_ids || coalesce(array_agg(c.id) FILTER (WHERE c.token IS NOT NULL), '{}'),
          v_attempts || coalesce(array_agg(c.attempts) FILTER (WHERE c.token IS NOT NULL), '{}'),
          v_expired || coalesce(array_agg(c.item) FILTER (WHERE c.expired), '{}'),
          v_dead || coalesce(array_agg(c.item) FILTER (WHERE c.token IS NULL), '{}'),
          v_left - count(*)::integer
        INTO v_items, v_ids, v_attempts, v_expired, v_dead, v_left
        FROM claimed AS c;
        EXIT WHEN v_left <= 0;
        -- The next level down: the first index entry past this level.
        SELECT c.priority INTO v_prio FROM {{schema}}.list_items AS c
        WHERE c.list = p_list AND c.run_at IS NOT NULL AND c.priority < v_prio
        ORDER BY c.priority DESC, c.run_at
        LIMIT 1;
        EXIT WHEN NOT FOUND;
      ELSE
        -- Past 8 levels: every level from v_prio down, in one ordered walk.
        WITH cand AS (
          SELECT c.ctid AS id, c.token IS NOT NULL AS expired FROM {{schema}}.list_items AS c
          WHERE c.list = p_list AND c.priority <= v_prio AND c.run_at <= statement_timestamp()
            AND (c.leased_until IS NULL OR c.leased_until <= statement_timestamp())
          ORDER BY c.priority DESC, c.run_at
          LIMIT v_left
          FOR UPDATE SKIP LOCKED
        ),
        claimed AS (
          UPDATE {{schema}}.list_items AS i SET
            attempts = i.attempts + (i.token IS NOT NULL)::int,
            token = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                         ELSE v_token END,
            run_at = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                          ELSE i.run_at END,
            leased_until = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts
                                THEN NULL ELSE v_lease_until END
          FROM cand
          WHERE i.ctid = cand.id
          RETURNING i.item, i.ctid AS id, i.attempts, i.token, cand.expired
        )
        SELECT
          v_items || coalesce(array_agg(c.item) FILTER (WHERE c.token IS NOT NULL), '{}'),
          v_ids || coalesce(array_agg(c.id) FILTER (WHERE c.token IS NOT NULL), '{}'),
          v_attempts || coalesce(array_agg(c.attempts) FILTER (WHERE c.token IS NOT NULL), '{}'),
          v_expired || coalesce(array_agg(c.item) FILTER (WHERE c.expired), '{}'),
          v_dead || coalesce(array_agg(c.item) FILTER (WHERE c.token IS NULL), '{}')
        INTO v_items, v_ids, v_attempts, v_expired, v_dead
        FROM claimed AS c;
        EXIT;
      END IF;
    END LOOP;
  END IF;
  RETURN QUERY SELECT v_done, v_items, v_ids, v_attempts,
    CASE WHEN cardinality(v_items) > 0 THEN v_token END,
    CASE WHEN cardinality(v_items) > 0 THEN v_lease_until END,
    v_expired, v_dead;
END
$fn$;
