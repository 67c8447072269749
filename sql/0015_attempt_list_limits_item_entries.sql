-- Attempt lists with limits: completions stop writing key rows.
--
-- Under 0014 a key's live leases were entries (item hash, lease end) on its key row, and every
-- settlement locked the row, in key order, to remove its entries. A completion therefore waited
-- for any claim or settlement holding the same key, and with several workers those waits chained
-- (a worker holding one of a key's two slots waited for the worker holding the other). Measured
-- on lists-limits: a claim + complete of 100 items cost 3.2x the unlimited path, and in the tail
-- of a Zipf backlog the workers ran one after another.
--
-- Now an entry is (item, token), and it is live while that item still holds that token and a
-- lease that has not ended: the claim that counts a key's leases looks the items up (primary
-- key) instead of trusting the row. So:
--   * complete deletes its items and nothing else: the slot frees when it commits. No key row
--     is locked or written, and completions never wait for claims or for each other. (Under a
--     list-wide limit every settlement still takes the list row first, as every claim does.)
--   * release and fail lock their keys (key order, as before) and make the keys due, as the
--     item is claimable again; the entries need no change (the token is gone).
--   * extend locks the list row (list-wide limit) and its keys first, and renews only leases
--     still live on the clock read after the locks, so it never revives a lease a claim has
--     counted free (unchanged from 0014).
--   * a key at its limit with items ready stays due (back of the round) instead of sleeping
--     until its first lease end, as no completion wakes it now; claims pass over full keys
--     without locking them, and visit a key they could not serve once per claim.
-- Exactness is as in 0014: entries are only added by claims holding the key row (and the list
-- row for the list-wide limit); a claim counts, on a clock read after its locks and in a
-- statement that sees every commit before it, the entries whose item still holds the lease. A
-- completion racing the count is seen as still leased, which can only hold a slot back, never
-- give one twice.
--
-- The 0014 columns lease_hashes / lease_ends stay (unused) so statements of the previous release
-- still run; list_lease_entries is no longer called.

ALTER TABLE {{schema}}.list_settings
  ADD COLUMN lease_items text[] COLLATE "C" NOT NULL DEFAULT '{}',
  ADD COLUMN lease_tokens bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE {{schema}}.list_keys
  ADD COLUMN lease_items text[] COLLATE "C" NOT NULL DEFAULT '{}',
  ADD COLUMN lease_tokens bigint[] NOT NULL DEFAULT '{}';

-- The entries of the leases live now (the ALTERs above wait for every claim in flight and hold
-- the tables until this commits).
UPDATE {{schema}}.list_keys AS k SET (lease_items, lease_tokens) = (
  SELECT coalesce(array_agg(i.item), '{}'), coalesce(array_agg(i.token), '{}')
  FROM {{schema}}.list_items AS i
  WHERE i.list = k.list AND i.key = k.key AND i.token IS NOT NULL
    AND i.leased_until > clock_timestamp());
UPDATE {{schema}}.list_settings AS s SET (lease_items, lease_tokens) = (
  SELECT coalesce(array_agg(i.item), '{}'), coalesce(array_agg(i.token), '{}')
  FROM {{schema}}.list_items AS i
  WHERE i.list = s.list AND i.token IS NOT NULL AND i.leased_until > clock_timestamp())
WHERE s.concurrency IS NOT NULL;

-- As in 0014, with the entries as (item, token).
CREATE OR REPLACE FUNCTION {{schema}}.list_set_limits(
  p_list text,
  p_key_regex text,
  p_key_concurrency integer,
  p_key_rate_limit double precision,
  p_key_rate_period_ms double precision,
  p_key_rate_algorithm integer,
  p_key_rate_burst double precision,
  p_concurrency integer
) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $fn$
DECLARE
  v_was boolean;
  v_now boolean := p_key_concurrency IS NOT NULL OR p_key_rate_limit IS NOT NULL
    OR p_concurrency IS NOT NULL;
  v_clock timestamptz;
BEGIN
  LOCK TABLE {{schema}}.list_settings IN ACCESS EXCLUSIVE MODE;
  SELECT s.key_concurrency IS NOT NULL OR s.key_rate_limit IS NOT NULL OR s.concurrency IS NOT NULL
    INTO v_was FROM {{schema}}.list_settings AS s WHERE s.list = p_list;
  v_was := coalesce(v_was, false);
  IF p_key_regex IS NULL AND NOT v_now THEN
    DELETE FROM {{schema}}.list_settings WHERE list = p_list;
    RETURN;
  END IF;
  INSERT INTO {{schema}}.list_settings AS s (list, key_regex, key_concurrency, key_rate_limit,
    key_rate_period_ms, key_rate_algorithm, key_rate_burst, concurrency)
  VALUES (p_list, p_key_regex, p_key_concurrency, p_key_rate_limit, p_key_rate_period_ms,
    p_key_rate_algorithm, p_key_rate_burst, p_concurrency)
  ON CONFLICT (list) DO UPDATE SET key_regex = EXCLUDED.key_regex,
    key_concurrency = EXCLUDED.key_concurrency, key_rate_limit = EXCLUDED.key_rate_limit,
    key_rate_period_ms = EXCLUDED.key_rate_period_ms,
    key_rate_algorithm = EXCLUDED.key_rate_algorithm, key_rate_burst = EXCLUDED.key_rate_burst,
    concurrency = EXCLUDED.concurrency;
  IF v_now AND NOT v_was THEN
    -- Keyless items take the key the list's rule gives them (as an insert would now), else ''.
    UPDATE {{schema}}.list_items SET key = coalesce(substring(item FROM p_key_regex), '')
    WHERE list = p_list AND key IS NULL;
    v_clock := clock_timestamp();
    INSERT INTO {{schema}}.list_keys AS k (list, key, next_at)
      SELECT p_list, d.key, v_clock FROM (
        SELECT DISTINCT i.key FROM {{schema}}.list_items AS i
        WHERE i.list = p_list AND i.key IS NOT NULL) AS d
      ORDER BY d.key
    ON CONFLICT (list, key) DO UPDATE SET next_at = least(k.next_at, EXCLUDED.next_at);
    UPDATE {{schema}}.list_keys AS k SET lease_items = l.h, lease_tokens = l.e
    FROM (
      SELECT d.key, coalesce(array_agg(i.item) FILTER (WHERE i.item IS NOT NULL), '{}') AS h,
             coalesce(array_agg(i.token) FILTER (WHERE i.item IS NOT NULL), '{}') AS e
      FROM {{schema}}.list_keys AS d
      LEFT JOIN {{schema}}.list_items AS i ON i.list = d.list AND i.key = d.key
        AND i.token IS NOT NULL AND i.leased_until > v_clock
      WHERE d.list = p_list
      GROUP BY d.key
    ) AS l
    WHERE k.list = p_list AND k.key = l.key;
    UPDATE {{schema}}.list_settings AS s SET
      lease_items = coalesce((SELECT array_agg(i.item)
        FROM {{schema}}.list_items AS i WHERE i.list = p_list AND i.token IS NOT NULL
          AND i.leased_until > v_clock), '{}'),
      lease_tokens = coalesce((SELECT array_agg(i.token)
        FROM {{schema}}.list_items AS i WHERE i.list = p_list AND i.token IS NOT NULL
          AND i.leased_until > v_clock), '{}')
    WHERE s.list = p_list;
  END IF;
END
$fn$;

-- As in 0014, but a completion touches only its items (see the top).
CREATE OR REPLACE FUNCTION {{schema}}.list_settle_limited(
  p_list text,
  p_op integer,
  p_items text[],
  p_tokens bigint[],
  p_ms double precision,
  p_max_attempts integer
) RETURNS TABLE (o_item text, o_dead boolean, o_until timestamptz, o_ctid tid)
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_sort = on
SET jit = off
AS $fn$
DECLARE
  v_list_limit boolean;
  v_now timestamptz;
  r_item text[]; r_key text[]; r_dead boolean[]; r_until timestamptz[]; r_ctid tid[];
BEGIN
  SELECT s.concurrency IS NOT NULL INTO v_list_limit FROM {{schema}}.list_settings AS s
  WHERE s.list = p_list;
  -- Under a list-wide limit the list row comes first, for every settlement as for every claim:
  -- a completion followed by a claim in one transaction (list_claim) must not hold an item an
  -- extend holding the list row waits for.
  IF v_list_limit THEN
    PERFORM 1 FROM {{schema}}.list_settings AS s WHERE s.list = p_list FOR UPDATE;
  END IF;
  IF p_op = 1 THEN
    -- Complete: the items only. The slot frees when this commits (the entry's item is gone);
    -- no key row is locked or written, so completions never wait for claims or each other
    -- (per-key limits).
    RETURN QUERY
    WITH done AS (
      DELETE FROM {{schema}}.list_items AS i
      USING unnest(p_items, p_tokens) AS d(item, token),
        LATERAL (SELECT x.ctid AS id FROM {{schema}}.list_items AS x
                 WHERE x.list = p_list AND x.item = d.item AND x.token = d.token LIMIT 1) AS f
      WHERE i.ctid = f.id
      RETURNING i.item
    )
    SELECT done.item, false, NULL::timestamptz, NULL::tid FROM done;
    RETURN;
  END IF;
  -- Extend revives nothing that a claim may have counted free: it holds the list row (list-wide
  -- limit) and the key rows, and renews only leases still live on the clock read after them.
  PERFORM 1 FROM {{schema}}.list_keys AS k
  WHERE k.list = p_list AND k.key IN (
    SELECT i.key FROM unnest(p_items) AS d(item),
      LATERAL (SELECT x.key FROM {{schema}}.list_items AS x
               WHERE x.list = p_list AND x.item = d.item LIMIT 1) AS i)
  ORDER BY k.key
  FOR UPDATE;
  v_now := clock_timestamp();
  IF p_op = 2 THEN
    WITH done AS (
      UPDATE {{schema}}.list_items AS i SET token = NULL, leased_until = NULL, run_at = '-infinity'
      FROM unnest(p_items, p_tokens) AS d(item, token),
        LATERAL (SELECT x.ctid AS id FROM {{schema}}.list_items AS x
                 WHERE x.list = p_list AND x.item = d.item AND x.token = d.token LIMIT 1) AS f
      WHERE i.ctid = f.id
      RETURNING i.item, i.key, false AS dead, NULL::timestamptz AS until, i.ctid AS id
    )
    SELECT array_agg(item), array_agg(key), array_agg(dead), array_agg(until), array_agg(id)
      INTO r_item, r_key, r_dead, r_until, r_ctid FROM done;
  ELSIF p_op = 3 THEN
    WITH done AS (
      UPDATE {{schema}}.list_items AS i SET attempts = i.attempts + 1, token = NULL,
        leased_until = NULL,
        run_at = CASE WHEN i.attempts + 1 >= p_max_attempts THEN NULL
                      WHEN p_ms <= 0 THEN '-infinity'::timestamptz
                      ELSE v_now + p_ms * interval '1 millisecond' END
      FROM unnest(p_items, p_tokens) AS d(item, token),
        LATERAL (SELECT x.ctid AS id FROM {{schema}}.list_items AS x
                 WHERE x.list = p_list AND x.item = d.item AND x.token = d.token LIMIT 1) AS f
      WHERE i.ctid = f.id
      RETURNING i.item, i.key, i.run_at IS NULL AS dead, NULL::timestamptz AS until, i.ctid AS id
    )
    SELECT array_agg(item), array_agg(key), array_agg(dead), array_agg(until), array_agg(id)
      INTO r_item, r_key, r_dead, r_until, r_ctid FROM done;
  ELSE
    WITH done AS (
      UPDATE {{schema}}.list_items AS i SET leased_until = v_now + p_ms * interval '1 millisecond'
      FROM unnest(p_items, p_tokens) AS d(item, token),
        LATERAL (SELECT x.ctid AS id FROM {{schema}}.list_items AS x
                 WHERE x.list = p_list AND x.item = d.item AND x.token = d.token LIMIT 1) AS f
      WHERE i.ctid = f.id AND i.run_at IS NOT NULL AND i.leased_until > v_now
      RETURNING i.item, i.key, false AS dead, i.leased_until AS until, i.ctid AS id
    )
    SELECT array_agg(item), array_agg(key), array_agg(dead), array_agg(until), array_agg(id)
      INTO r_item, r_key, r_dead, r_until, r_ctid FROM done;
  END IF;
  IF r_item IS NULL THEN
    RETURN;
  END IF;
  -- A released or failed item is claimable again (now or after its retry delay): its key is due
  -- at once, and its next claim visit moves it on if it has nothing ready.
  IF p_op IN (2, 3) THEN
    UPDATE {{schema}}.list_keys AS k SET next_at = least(k.next_at, v_now)
    WHERE k.list = p_list AND k.key = ANY (r_key);
  END IF;
  RETURN QUERY SELECT u.item, u.dead, u.until, u.id
    FROM unnest(r_item, r_dead, r_until, r_ctid) AS u(item, dead, until, id);
END
$fn$;

-- As in 0014, counting an entry live while its item holds the lease (see the top), visiting a
-- key once per claim, and keeping a full key with items ready in the round.
CREATE OR REPLACE FUNCTION {{schema}}.list_claim_limited(
  p_list text,
  p_limit integer,
  p_lease_ms double precision,
  p_max_attempts integer,
  p_key_concurrency integer,
  p_concurrency integer
)
RETURNS TABLE (
  o_items text[],
  o_ctids tid[],
  o_attempts integer[],
  o_token bigint,
  o_lease_until timestamptz,
  o_expired text[],
  o_dead text[],
  o_next_at timestamptz
)
LANGUAGE plpgsql
VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
-- Sorts of a few rows (the keys of a pass, their candidates) are what this function needs; the
-- caller (list_claim) turns them off for its own walk. jit: a plan with a disabled node costs
-- 1e10, which would make every call JIT-compile its statements (measured: 1.4 s a call).
SET enable_sort = on
SET jit = off
AS $fn$
DECLARE
  s {{schema}}.list_settings%ROWTYPE;
  v_kc integer;
  v_lc integer;
  v_left integer := p_limit;
  v_room integer;
  v_pass integer := 0;
  v_now timestamptz;
  v_until timestamptz;
  v_first_until timestamptz;
  v_token bigint;
  v_keys text[];
  v_weights integer[];
  v_live integer[];
  v_share integer;
  c_key text[];
  c_expired boolean[];
  c_had text[];
  c_id tid[];
  c_ok boolean[];
  c_retry double precision[];
  k_took text[];
  k_item text[];
  l_key text[];
  l_item text[];
  l_token bigint[];
  l_until timestamptz[];
  v_visited text[] := '{}';
  v_items text[] := '{}';
  v_ids tid[] := '{}';
  v_attempts integer[] := '{}';
  v_expired text[] := '{}';
  v_dead text[] := '{}';
  v_next timestamptz;
  v_live_list integer;
  v_list_until timestamptz;
BEGIN
  SELECT * INTO s FROM {{schema}}.list_settings AS x WHERE x.list = p_list;
  v_kc := least(s.key_concurrency, p_key_concurrency);
  v_lc := least(s.concurrency, p_concurrency);
  IF s.concurrency IS NOT NULL THEN
    PERFORM 1 FROM {{schema}}.list_settings AS x WHERE x.list = p_list FOR UPDATE;
  END IF;
  v_token := nextval(format('%I.list_token_seq', {{schema_literal}})::regclass);
  WHILE v_left > 0 AND v_pass < 4 LOOP
    v_pass := v_pass + 1;
    SELECT array_agg(k.key ORDER BY k.next_at, k.key),
           array_agg(k.weight ORDER BY k.next_at, k.key)
      INTO v_keys, v_weights
    FROM (
      -- Due keys not yet visited by this claim, passing over (before any lock is tried) those
      -- whose entries say they are full: a full key stays due, and locking it would keep out
      -- the claim of the worker about to free its slot. The count is taken again once the row
      -- is ours.
      SELECT x.key, x.next_at, x.weight FROM {{schema}}.list_keys AS x
      WHERE x.list = p_list AND x.next_at <= clock_timestamp()
        AND NOT (x.key = ANY (v_visited))
        AND (v_kc IS NULL OR cardinality(x.lease_items) < v_kc OR (
          SELECT count(*) FROM unnest(x.lease_items, x.lease_tokens) AS e(item, token)
          WHERE EXISTS (SELECT 1 FROM {{schema}}.list_items AS i
                        WHERE i.list = p_list AND i.item = e.item AND i.token = e.token
                          AND i.leased_until > clock_timestamp())) < v_kc)
      ORDER BY x.next_at, x.key
      -- As many keys as the items wanted need at the per-key limit (a key locked is a key row
      -- written and held to the end of the claim), plus a few, so due keys with nothing to give
      -- do not cost a pass each.
      LIMIT ceil(v_left::numeric / coalesce(v_kc, 1))::integer + 4
      FOR UPDATE SKIP LOCKED
    ) AS k;
    EXIT WHEN v_keys IS NULL;
    -- The clock, read once this pass's key rows are ours: the rows are the latest versions, so
    -- per key this time is after every earlier holder's. Live leases are counted at it (in a new
    -- statement, which sees what the rows' previous holders committed, and every settlement
    -- committed so far): an entry is live while its item still holds its token and lease.
    v_now := clock_timestamp();
    v_until := v_now + p_lease_ms * interval '1 millisecond';
    v_first_until := coalesce(v_first_until, v_until);
    WITH live AS (
      SELECT u.key, u.o, e.item, e.token, e.until
      FROM unnest(v_keys) WITH ORDINALITY AS u(key, o)
      JOIN {{schema}}.list_keys AS x ON x.list = p_list AND x.key = u.key
      LEFT JOIN LATERAL (
        SELECT e0.item, e0.token, i.leased_until AS until
        FROM unnest(x.lease_items, x.lease_tokens) AS e0(item, token)
        JOIN {{schema}}.list_items AS i ON i.list = p_list AND i.item = e0.item
          AND i.token = e0.token AND i.leased_until > v_now) AS e ON true
    )
    SELECT (SELECT array_agg(g.n ORDER BY g.o)
            FROM (SELECT live.o, count(live.item)::integer AS n FROM live GROUP BY live.o) AS g),
           array_agg(live.key) FILTER (WHERE live.item IS NOT NULL),
           array_agg(live.item) FILTER (WHERE live.item IS NOT NULL),
           array_agg(live.token) FILTER (WHERE live.item IS NOT NULL),
           array_agg(live.until) FILTER (WHERE live.item IS NOT NULL)
      INTO v_live, l_key, l_item, l_token, l_until
    FROM live;
    v_room := v_left;
    IF v_lc IS NOT NULL THEN
      v_room := least(v_room, v_lc - (
        SELECT count(*)::integer FROM {{schema}}.list_settings AS x,
          unnest(x.lease_items, x.lease_tokens) AS e(item, token)
        WHERE x.list = p_list AND EXISTS (SELECT 1 FROM {{schema}}.list_items AS i
          WHERE i.list = p_list AND i.item = e.item AND i.token = e.token
            AND i.leased_until > v_now)));
    END IF;
    v_share := greatest(1, ceil(v_left::numeric / (SELECT sum(w) FROM unnest(v_weights) AS w)));
    c_key := NULL; c_expired := NULL; c_had := NULL; c_id := NULL; c_ok := NULL; c_retry := NULL;
    IF v_room > 0 THEN
      WITH k AS (
        SELECT u.key, u.o,
               least(u.w * v_share, coalesce(v_kc - u.live, v_left), v_left) AS want
        FROM unnest(v_keys, v_weights, v_live) WITH ORDINALITY AS u(key, w, live, o)
      ),
      c AS (
        SELECT k.key, k.o, x.id, x.expired, x.prio, x.run_at FROM k
        CROSS JOIN LATERAL (
          SELECT i.ctid AS id, i.token IS NOT NULL AS expired, i.priority AS prio, i.run_at
          FROM {{schema}}.list_items AS i
          WHERE i.list = p_list AND i.key = k.key AND i.run_at <= v_now
            AND (i.leased_until IS NULL OR i.leased_until <= v_now)
          ORDER BY i.priority DESC, i.run_at
          LIMIT greatest(k.want, 0)
          FOR UPDATE SKIP LOCKED
        ) AS x
      ),
      r AS (
        SELECT c.*, row_number() OVER (PARTITION BY c.key ORDER BY c.prio DESC, c.run_at) AS j
        FROM c
      ),
      t AS (SELECT r.* FROM r ORDER BY r.j, r.o LIMIT v_room)
      SELECT array_agg(t.key ORDER BY t.o, t.j), array_agg(t.expired ORDER BY t.o, t.j),
             array_agg(t.id ORDER BY t.o, t.j), (SELECT array_agg(DISTINCT r.key) FROM r)
        INTO c_key, c_expired, c_id, c_had
      FROM t;
    END IF;
    IF c_key IS NOT NULL AND s.key_rate_limit IS NOT NULL THEN
      -- The per-key rate, by the rate limiter's own decision function, each key's items in
      -- order (so a key's first items are the allowed ones), on this pass's clock.
      SELECT array_agg(d.allowed ORDER BY d.item), array_agg(d.retry_after_ms ORDER BY d.item)
        INTO c_ok, c_retry
      FROM {{schema}}.rate_limit_decide(false, true, s.key_rate_algorithm,
        ARRAY[s.key_rate_limit], ARRAY[s.key_rate_period_ms], ARRAY[s.key_rate_burst],
        (SELECT array_agg(z.rk ORDER BY z.n) FROM (
           SELECT DISTINCT ON (u.key) 'list:' || length(p_list) || ':' || p_list || ':' || u.key AS rk,
                  u.n FROM unnest(c_key) WITH ORDINALITY AS u(key, n) ORDER BY u.key, u.n) AS z),
        (SELECT array_agg(z.slot ORDER BY z.n) FROM (
           SELECT u.n, dense_rank() OVER (ORDER BY f.first) AS slot
           FROM unnest(c_key) WITH ORDINALITY AS u(key, n)
           JOIN (SELECT v.key, min(v.n) AS first FROM unnest(c_key) WITH ORDINALITY AS v(key, n)
                 GROUP BY v.key) AS f ON f.key = u.key) AS z)::integer[],
        array_fill(1::double precision, ARRAY[cardinality(c_key)]),
        extract(epoch FROM v_now)::double precision * 1000) AS d;
    END IF;
    IF c_key IS NOT NULL THEN
      WITH chosen AS (
        SELECT u.id, u.key, u.expired FROM unnest(c_id, c_key, c_expired, coalesce(c_ok,
          array_fill(true, ARRAY[cardinality(c_key)]))) AS u(id, key, expired, ok)
        WHERE u.ok
      ),
      claimed AS (
        UPDATE {{schema}}.list_items AS i SET
          attempts = i.attempts + (i.token IS NOT NULL)::int,
          token = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                       ELSE v_token END,
          run_at = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts THEN NULL
                        ELSE i.run_at END,
          leased_until = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= p_max_attempts
                              THEN NULL ELSE v_until END
        FROM chosen
        WHERE i.ctid = chosen.id
        RETURNING i.item, i.ctid AS id, i.attempts, i.token, chosen.key, chosen.expired
      )
      SELECT
        v_items || coalesce(array_agg(c.item) FILTER (WHERE c.token IS NOT NULL), '{}'),
        v_ids || coalesce(array_agg(c.id) FILTER (WHERE c.token IS NOT NULL), '{}'),
        v_attempts || coalesce(array_agg(c.attempts) FILTER (WHERE c.token IS NOT NULL), '{}'),
        v_expired || coalesce(array_agg(c.item) FILTER (WHERE c.expired), '{}'),
        v_dead || coalesce(array_agg(c.item) FILTER (WHERE c.token IS NULL), '{}'),
        coalesce(array_agg(c.key) FILTER (WHERE c.token IS NOT NULL), '{}'),
        coalesce(array_agg(c.item) FILTER (WHERE c.token IS NOT NULL), '{}')
        INTO v_items, v_ids, v_attempts, v_expired, v_dead, k_took, k_item
      FROM claimed AS c;
    ELSE
      k_took := '{}';
      k_item := '{}';
    END IF;
    -- Each key of this pass: its entries (the live ones, plus one per item just claimed), and its
    -- next turn.
    UPDATE {{schema}}.list_keys AS x SET (lease_items, lease_tokens, next_at) = (
      SELECT coalesce(array_agg(e.item), '{}'), coalesce(array_agg(e.token), '{}'),
      CASE
        -- Its rate said no: due when the rate allows the next claim.
        WHEN g.retry_ms IS NOT NULL THEN v_now + g.retry_ms * interval '1 millisecond'
        -- Served: to the back of the round.
        WHEN g.served THEN v_now
        -- At its stored concurrency limit with items ready: to the back of the round too, and
        -- still due. A completion frees a slot without writing this row, so the key has to stay
        -- in the round; the visit that finds it full costs a lock and this write.
        WHEN s.key_concurrency IS NOT NULL AND count(*) >= s.key_concurrency AND EXISTS (
          SELECT 1 FROM {{schema}}.list_items AS i
          WHERE i.list = p_list AND i.key = x.key AND i.run_at <= v_now
            AND (i.leased_until IS NULL OR i.leased_until <= v_now))
          THEN v_now
        -- Had items found but cut off by the claim's limit or the list's room, or held back by
        -- this claim's own tighter limit: keeps its place.
        WHEN g.found OR v_room <= 0 OR (v_kc IS NOT NULL AND count(*) >= v_kc)
          THEN x.next_at
        -- Its turn came and it had nothing claimable: due when its first delayed item is, or
        -- when its first lease ends (an expired lease makes its item claimable again). An
        -- insert, release, fail or requeue brings it back sooner.
        ELSE coalesce(least(min(e.until), (
          SELECT min(greatest(i.run_at, v_now)) FROM {{schema}}.list_items AS i
          WHERE i.list = p_list AND i.key = x.key AND i.run_at IS NOT NULL
            AND (i.leased_until IS NULL OR i.leased_until <= v_now))), 'infinity')
      END
      -- (The entries found live when the pass counted them: one completed since is dropped by
      -- the key's next visit.)
      FROM (
        SELECT u.item, u.token, u.until
        FROM unnest(g.live_items, g.live_tokens, g.live_until) AS u(item, token, until)
        UNION ALL
        SELECT a.item, v_token, v_until FROM unnest(g.items) AS a(item)
      ) AS e)
    FROM (
      -- Per key of the pass, in one grouped pass over each array (a correlated scan of the
      -- arrays per key cost O(keys x items): 9 ms for 100 keys).
      SELECT u.key, coalesce(a.served, false) AS served, u.key = ANY (coalesce(c_had, '{}')) AS found,
             a.retry_ms, t.items, lv.live_items, lv.live_tokens, lv.live_until
      FROM unnest(v_keys) AS u(key)
      LEFT JOIN (
        SELECT v.key, bool_or(v.ok IS NOT FALSE) AS served,
               min(v.retry) FILTER (WHERE NOT v.ok) AS retry_ms
        FROM unnest(c_key, c_ok, c_retry) AS v(key, ok, retry)
        GROUP BY v.key) AS a ON a.key = u.key
      LEFT JOIN (
        SELECT v.key, array_agg(v.item) AS items FROM unnest(k_took, k_item) AS v(key, item)
        GROUP BY v.key) AS t ON t.key = u.key
      LEFT JOIN (
        SELECT v.key, array_agg(v.item) AS live_items, array_agg(v.token) AS live_tokens,
               array_agg(v.until) AS live_until
        FROM unnest(l_key, l_item, l_token, l_until) AS v(key, item, token, until)
        GROUP BY v.key) AS lv ON lv.key = u.key
    ) AS g
    WHERE x.list = p_list AND x.key = g.key;
    -- A key this pass did not serve is not visited again by this claim (a full key stays due,
    -- see above); a served one comes round again after every key still due.
    v_visited := v_visited || coalesce((SELECT array_agg(u.key) FROM unnest(v_keys) AS u(key)
      WHERE NOT (u.key = ANY (k_took))), '{}');
    IF s.concurrency IS NOT NULL AND cardinality(k_item) > 0 THEN
      UPDATE {{schema}}.list_settings AS x SET (lease_items, lease_tokens) = (
        SELECT coalesce(array_agg(e.item), '{}'), coalesce(array_agg(e.token), '{}')
        FROM (
          SELECT u.item, u.token FROM unnest(x.lease_items, x.lease_tokens) AS u(item, token)
          WHERE EXISTS (SELECT 1 FROM {{schema}}.list_items AS i
            WHERE i.list = p_list AND i.item = u.item AND i.token = u.token
              AND i.leased_until > v_now)
          UNION ALL
          SELECT a.item, v_token FROM unnest(k_item) AS a(item)
        ) AS e)
      WHERE x.list = p_list;
    END IF;
    v_left := p_limit - cardinality(v_items);
    -- Another pass while the claim is short: keys served in this one come round again after
    -- every key still due (they are now the most recently served), and keys found empty or at
    -- their limit are no longer due.
    EXIT WHEN v_room <= 0;
  END LOOP;
  IF v_left > 0 THEN
    v_now := coalesce(v_now, clock_timestamp());
    SELECT x.next_at INTO v_next FROM {{schema}}.list_keys AS x
    WHERE x.list = p_list AND x.next_at > v_now ORDER BY x.next_at LIMIT 1;
    IF v_kc IS NOT NULL THEN
      -- Full keys stay due: their next slot comes with a completion, or at their first lease end
      -- at the latest (among the first 100 due keys).
      v_next := least(v_next, (
        SELECT min(i.leased_until)
        FROM (SELECT y.lease_items, y.lease_tokens FROM {{schema}}.list_keys AS y
              WHERE y.list = p_list AND y.next_at <= v_now ORDER BY y.next_at LIMIT 100) AS x,
          unnest(x.lease_items, x.lease_tokens) AS e(item, token)
          JOIN {{schema}}.list_items AS i ON i.list = p_list AND i.item = e.item
            AND i.token = e.token AND i.leased_until > v_now));
    END IF;
    IF v_lc IS NOT NULL THEN
      SELECT count(*), min(i.leased_until) INTO v_live_list, v_list_until
      FROM {{schema}}.list_settings AS x, unnest(x.lease_items, x.lease_tokens) AS e(item, token)
        JOIN {{schema}}.list_items AS i ON i.list = p_list AND i.item = e.item
          AND i.token = e.token AND i.leased_until > v_now
      WHERE x.list = p_list;
      IF v_live_list >= v_lc THEN
        v_next := v_list_until;
      END IF;
    END IF;
    IF v_next = 'infinity' THEN
      v_next := NULL;
    END IF;
  END IF;
  RETURN QUERY SELECT v_items, v_ids, v_attempts,
    CASE WHEN cardinality(v_items) > 0 THEN v_token END,
    CASE WHEN cardinality(v_items) > 0 THEN v_first_until END,
    v_expired, v_dead, v_next;
END
$fn$;