-- Attempt lists: keys on items, limits stored per list (per-key concurrency, per-key rate,
-- list-wide concurrency), and claims that take from keys round-robin.
--
-- Exactness. Under READ COMMITTED a statement reads one snapshot, so counting a key's leased
-- items in a claim is not exact: two claimers both see N - 1 and both take one. The state a
-- limit needs therefore lives in a row per (list, key) (list_keys) and one per list
-- (list_settings), and only the transaction holding that row's lock changes it or the leases of
-- its items. A claim locks key rows FOR UPDATE SKIP LOCKED, which returns the latest committed
-- version of each, then reads the clock and decides from that state; every later statement of
-- the claim takes a fresh snapshot that sees whatever the previous holder committed. The lease
-- state is the lease ends themselves (one entry per leased item: a hash of the item and its
-- lease end), so a lease that expires frees its slot without anyone writing (live = end > the
-- clock), and complete / fail / release / extend update the entries in the same transaction as
-- the items. No advisory lock and no lock outlives the statement's transaction, so PgBouncer's
-- transaction mode keeps working.
--
-- Lock order, everywhere: the list_settings row (only with a list-wide limit), then key rows in
-- key order, then items. Claims wait only for the list row; key rows and items they SKIP LOCKED.
-- Settlements wait for the list row and their keys' rows in key order, then touch items only of
-- keys they hold. So no cycle can form among claims and settlements.
--
-- The unlimited fast path: list_claim first probes list_settings (one primary-key lookup) and
-- runs 0012's claim unchanged when the list has no limits. Limits change only under an ACCESS
-- EXCLUSIVE lock on list_settings (list_set_limits): every claim, settlement and insert reads
-- list_settings in its own transaction and holds its ACCESS SHARE lock until it ends, so a change
-- waits for those in flight and the ones after it see it. Nothing can take the fast path on a
-- list that has limits, and the lease entries are rebuilt from the live leases when limits appear.

-- The item's key: NULL on lists that never had limits; '' stands for "no key" (a regex matched
-- nothing, or no key was given) on lists with limits, so every item of such a list has a key row.
-- Keys are set on insert and never change. Adding a nullable column rewrites nothing.
ALTER TABLE {{schema}}.list_items ADD COLUMN key text COLLATE "C";

-- A key's claimable items in claim order. Partial: items without a key (every item of a list
-- that never had limits nor keys) add no entry, so such lists pay nothing on insert. No column a
-- claim changes is indexed: claims stay HOT updates (0007).
CREATE INDEX list_items_key ON {{schema}}.list_items (list, key, priority DESC, run_at)
  WHERE run_at IS NOT NULL AND key IS NOT NULL;

-- Per list: the key rule (a PostgreSQL regular expression whose first capture group is the key,
-- applied on insert to items given without a key) and the limits. NULL: no such limit. The lease
-- entries count toward `concurrency` (kept only while it is set).
CREATE TABLE {{schema}}.list_settings (
  list text COLLATE "C" PRIMARY KEY,
  key_regex text,
  key_concurrency integer,
  key_rate_limit double precision,
  key_rate_period_ms double precision,
  key_rate_algorithm integer,
  key_rate_burst double precision,
  concurrency integer,
  lease_hashes bigint[] NOT NULL DEFAULT '{}',
  lease_ends timestamptz[] NOT NULL DEFAULT '{}'
);

-- Per (list, key): the round-robin position and the key's live leases.
--   next_at  when the key may be served next: the time it was last served (round-robin: least
--            recently served first), the end of its earliest lease while it is at its concurrency
--            limit, when its rate allows the next claim, when its next delayed item is due, or
--            'infinity' when it has nothing claimable (an insert, settlement or requeue brings it
--            back). A claim visits keys with next_at <= now only.
--   weight   items a key gets per turn (weighted round-robin). Default 1.
--   lease_hashes, lease_ends  one entry per leased item: hashtextextended(item, 0), lease end.
CREATE TABLE {{schema}}.list_keys (
  list text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  next_at timestamptz NOT NULL,
  weight integer NOT NULL DEFAULT 1,
  lease_hashes bigint[] NOT NULL DEFAULT '{}',
  lease_ends timestamptz[] NOT NULL DEFAULT '{}',
  PRIMARY KEY (list, key)
) WITH (
  fillfactor = 50,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_cost_delay = 0
);

CREATE INDEX list_keys_turn ON {{schema}}.list_keys (list, next_at, key);

-- Entries of (hashes, ends) still live at p_now, minus the hashes in p_drop, plus (p_add_h, p_add_e).
CREATE FUNCTION {{schema}}.list_lease_entries(
  p_hashes bigint[], p_ends timestamptz[], p_now timestamptz,
  p_drop bigint[], p_add_h bigint[], p_add_e timestamptz[]
) RETURNS TABLE (o_hashes bigint[], o_ends timestamptz[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
  SELECT coalesce(array_agg(x.h ORDER BY x.e), '{}'), coalesce(array_agg(x.e ORDER BY x.e), '{}')
  FROM (
    SELECT u.h, u.e FROM unnest(p_hashes, p_ends) AS u(h, e)
    WHERE u.e > p_now AND NOT (u.h = ANY (coalesce(p_drop, '{}')))
    UNION ALL
    SELECT a.h, a.e FROM unnest(p_add_h, p_add_e) AS a(h, e) WHERE a.h IS NOT NULL
  ) AS x;
$fn$;

-- Sets (or clears, with every argument NULL) a list's key rule and limits. Takes the fence
-- described at the top, and when the list goes from no limits to limits, gives its keyless items
-- their key by the key rule (else '') and rebuilds the key rows and their lease entries from the live leases.
CREATE FUNCTION {{schema}}.list_set_limits(
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
    UPDATE {{schema}}.list_keys AS k SET lease_hashes = l.h, lease_ends = l.e
    FROM (
      SELECT d.key, coalesce(array_agg(hashtextextended(i.item, 0)) FILTER (WHERE i.item IS NOT NULL), '{}') AS h,
             coalesce(array_agg(i.leased_until) FILTER (WHERE i.item IS NOT NULL), '{}') AS e
      FROM {{schema}}.list_keys AS d
      LEFT JOIN {{schema}}.list_items AS i ON i.list = d.list AND i.key = d.key
        AND i.token IS NOT NULL AND i.leased_until > v_clock
      WHERE d.list = p_list
      GROUP BY d.key
    ) AS l
    WHERE k.list = p_list AND k.key = l.key;
    UPDATE {{schema}}.list_settings AS s SET
      lease_hashes = coalesce((SELECT array_agg(hashtextextended(i.item, 0))
        FROM {{schema}}.list_items AS i WHERE i.list = p_list AND i.token IS NOT NULL
          AND i.leased_until > v_clock), '{}'),
      lease_ends = coalesce((SELECT array_agg(i.leased_until)
        FROM {{schema}}.list_items AS i WHERE i.list = p_list AND i.token IS NOT NULL
          AND i.leased_until > v_clock), '{}')
    WHERE s.list = p_list;
  END IF;
END
$fn$;

-- Applies settlements on a list with limits: p_op 1 complete, 2 release, 3 fail (p_ms retry
-- delay, p_max_attempts), 4 extend (p_ms lease). Locks the list row (list-wide limit) and the
-- items' key rows in key order first, then changes the items whose token is current and updates
-- the lease entries in the same transaction. Extend renews live leases only: a lease that expired
-- may already count as free (its entry is gone), so reviving it could break a limit.
CREATE FUNCTION {{schema}}.list_settle_limited(
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
  IF v_list_limit THEN
    PERFORM 1 FROM {{schema}}.list_settings AS s WHERE s.list = p_list FOR UPDATE;
  END IF;
  PERFORM 1 FROM {{schema}}.list_keys AS k
  WHERE k.list = p_list AND k.key IN (
    SELECT i.key FROM unnest(p_items) AS d(item),
      LATERAL (SELECT x.key FROM {{schema}}.list_items AS x
               WHERE x.list = p_list AND x.item = d.item LIMIT 1) AS i)
  ORDER BY k.key
  FOR UPDATE;
  v_now := clock_timestamp();
  IF p_op = 1 THEN
    WITH done AS (
      DELETE FROM {{schema}}.list_items AS i
      USING unnest(p_items, p_tokens) AS d(item, token),
        LATERAL (SELECT x.ctid AS id FROM {{schema}}.list_items AS x
                 WHERE x.list = p_list AND x.item = d.item AND x.token = d.token LIMIT 1) AS f
      WHERE i.ctid = f.id
      RETURNING i.item, i.key, false AS dead, NULL::timestamptz AS until, NULL::tid AS id
    )
    SELECT array_agg(item), array_agg(key), array_agg(dead), array_agg(until), array_agg(id)
      INTO r_item, r_key, r_dead, r_until, r_ctid FROM done;
  ELSIF p_op = 2 THEN
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
  -- Settled items leave their key's entries (an extend puts them back with the new end); a key
  -- that gained a free slot or a ready item is due at once (its next claim visit recomputes).
  UPDATE {{schema}}.list_keys AS k SET (lease_hashes, lease_ends, next_at) = (
    SELECT e.o_hashes, e.o_ends,
           CASE WHEN p_op = 4 THEN k.next_at ELSE least(k.next_at, v_now) END
    FROM {{schema}}.list_lease_entries(k.lease_hashes, k.lease_ends, v_now, g.h,
      CASE WHEN p_op = 4 THEN g.h END, CASE WHEN p_op = 4 THEN g.e END) AS e)
  FROM (
    SELECT u.key, array_agg(hashtextextended(u.item, 0)) AS h, array_agg(u.until) AS e
    FROM unnest(r_item, r_key, r_until) AS u(item, key, until)
    GROUP BY u.key
  ) AS g
  WHERE k.list = p_list AND k.key = g.key;
  IF v_list_limit THEN
    UPDATE {{schema}}.list_settings AS x SET (lease_hashes, lease_ends) = (
      SELECT e.o_hashes, e.o_ends
      FROM {{schema}}.list_lease_entries(x.lease_hashes, x.lease_ends, v_now, g.h,
        CASE WHEN p_op = 4 THEN g.h END, CASE WHEN p_op = 4 THEN g.e END) AS e)
    FROM (
      SELECT array_agg(hashtextextended(u.item, 0)) AS h, array_agg(u.until) AS e
      FROM unnest(r_item, r_until) AS u(item, until)
    ) AS g
    WHERE x.list = p_list;
  END IF;
  RETURN QUERY SELECT u.item, u.dead, u.until, u.id
    FROM unnest(r_item, r_dead, r_until, r_ctid) AS u(item, dead, until, id);
END
$fn$;

-- Claims up to p_limit items of a list with limits. In passes (at most 4): lock the keys whose
-- turn has come (next_at <= now), least recently served first, skipping keys another claim or
-- settlement holds; read the clock; give each key a share (its weight times an even split of
-- what is left, capped by its free slots); lock that many of its claimable items; take them
-- item-round-robin across keys (every key's first item before any key's second) up to what is
-- left and the list's free slots; ask the key's rate limit (rate_limit_decide of 0010, on the
-- clock read after the locks, so per key the clock never runs backwards); claim the allowed
-- items; record their lease entries and move each key's next_at. p_key_concurrency and
-- p_concurrency tighten the stored limits for this claim (NULL: as stored).
--
-- Returns, besides the claim, o_next_at: when this list may next have something to claim (the
-- earliest next_at still in the future, or the first lease end while the list is at its limit);
-- NULL when nothing is scheduled (an insert wakes the workers).
CREATE FUNCTION {{schema}}.list_claim_limited(
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
  k_hash bigint[];
  v_items text[] := '{}';
  v_ids tid[] := '{}';
  v_attempts integer[] := '{}';
  v_expired text[] := '{}';
  v_dead text[] := '{}';
  v_next timestamptz;
  v_list_ends timestamptz[];
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
      SELECT x.key, x.next_at, x.weight FROM {{schema}}.list_keys AS x
      WHERE x.list = p_list AND x.next_at <= clock_timestamp()
      ORDER BY x.next_at, x.key
      -- As many keys as the items wanted need at the per-key limit (a key locked is a key row
      -- written and held to the end of the claim: fewer keys, less waiting for settlements),
      -- plus a few, so due keys with nothing to give do not cost a pass each.
      LIMIT ceil(v_left::numeric / coalesce(v_kc, 1))::integer + 4
      FOR UPDATE SKIP LOCKED
    ) AS k;
    EXIT WHEN v_keys IS NULL;
    -- The clock, read once this pass's key rows are ours: the rows are the latest versions, so
    -- per key this time is after every earlier holder's. Live leases are counted at it (in a new
    -- statement, which sees what the rows' previous holders committed).
    v_now := clock_timestamp();
    v_until := v_now + p_lease_ms * interval '1 millisecond';
    v_first_until := coalesce(v_first_until, v_until);
    SELECT array_agg((SELECT count(*)::integer FROM unnest(x.lease_ends) AS e WHERE e > v_now)
                     ORDER BY u.o)
      INTO v_live
    FROM unnest(v_keys) WITH ORDINALITY AS u(key, o)
    JOIN {{schema}}.list_keys AS x ON x.list = p_list AND x.key = u.key;
    v_room := v_left;
    IF v_lc IS NOT NULL THEN
      SELECT x.lease_ends INTO v_list_ends FROM {{schema}}.list_settings AS x WHERE x.list = p_list;
      v_room := least(v_room, v_lc - (SELECT count(*)::integer FROM unnest(v_list_ends) AS e
                                      WHERE e > v_now));
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
        coalesce(array_agg(hashtextextended(c.item, 0)) FILTER (WHERE c.token IS NOT NULL), '{}')
        INTO v_items, v_ids, v_attempts, v_expired, v_dead, k_took, k_hash
      FROM claimed AS c;
    ELSE
      k_took := '{}';
      k_hash := '{}';
    END IF;
    -- Each key of this pass: new lease entries, and its next turn.
    UPDATE {{schema}}.list_keys AS x SET (lease_hashes, lease_ends, next_at) = (
      SELECT coalesce(array_agg(e.h ORDER BY e.e), '{}'), coalesce(array_agg(e.e ORDER BY e.e), '{}'),
      CASE
        -- Its rate said no: due when the rate allows the next claim.
        WHEN g.retry_ms IS NOT NULL THEN v_now + g.retry_ms * interval '1 millisecond'
        -- At its stored concurrency limit: due when its first lease ends (a settlement brings
        -- it back sooner).
        WHEN s.key_concurrency IS NOT NULL AND count(*) >= s.key_concurrency
          THEN min(e.e)
        -- Served: to the back of the round.
        WHEN g.served THEN v_now
        -- Had items found but cut off by the claim's limit or the list's room, or held back by
        -- this claim's own tighter limit: keeps its place.
        WHEN g.found OR v_room <= 0 OR (v_kc IS NOT NULL AND count(*) >= v_kc)
          THEN x.next_at
        -- Its turn came and it had nothing claimable: due when its first delayed item is, or
        -- when its first lease ends (an expired lease makes its item claimable again).
        ELSE coalesce(least(min(e.e), (
          SELECT min(greatest(i.run_at, v_now)) FROM {{schema}}.list_items AS i
          WHERE i.list = p_list AND i.key = x.key AND i.run_at IS NOT NULL
            AND (i.leased_until IS NULL OR i.leased_until <= v_now))), 'infinity')
      END
      -- The key's entries: live ones, plus one per item just claimed (inline rather than through
      -- list_lease_entries: a function call per key cost ~80 us).
      FROM (
        SELECT u.h, u.e FROM unnest(x.lease_hashes, x.lease_ends) AS u(h, e) WHERE u.e > v_now
        UNION ALL
        SELECT a.h, v_until FROM unnest(g.h) AS a(h)
      ) AS e)
    FROM (
      -- Per key of the pass, in one grouped pass over each array (a correlated scan of the
      -- arrays per key cost O(keys x items): 9 ms for 100 keys).
      SELECT u.key, coalesce(a.served, false) AS served, u.key = ANY (coalesce(c_had, '{}')) AS found,
             a.retry_ms, t.h
      FROM unnest(v_keys) AS u(key)
      LEFT JOIN (
        SELECT v.key, bool_or(v.ok IS NOT FALSE) AS served,
               min(v.retry) FILTER (WHERE NOT v.ok) AS retry_ms
        FROM unnest(c_key, c_ok, c_retry) AS v(key, ok, retry)
        GROUP BY v.key) AS a ON a.key = u.key
      LEFT JOIN (
        SELECT v.key, array_agg(v.h) AS h FROM unnest(k_took, k_hash) AS v(key, h)
        GROUP BY v.key) AS t ON t.key = u.key
    ) AS g
    WHERE x.list = p_list AND x.key = g.key;
    IF s.concurrency IS NOT NULL AND cardinality(k_hash) > 0 THEN
      UPDATE {{schema}}.list_settings AS x SET (lease_hashes, lease_ends) = (
        SELECT e.o_hashes, e.o_ends
        FROM {{schema}}.list_lease_entries(x.lease_hashes, x.lease_ends, v_now, k_hash, k_hash,
          array_fill(v_until, ARRAY[cardinality(k_hash)])) AS e)
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
    IF v_lc IS NOT NULL THEN
      SELECT x.lease_ends INTO v_list_ends FROM {{schema}}.list_settings AS x WHERE x.list = p_list;
      IF (SELECT count(*) FROM unnest(v_list_ends) AS e WHERE e > v_now) >= v_lc THEN
        v_next := (SELECT min(e) FROM unnest(v_list_ends) AS e WHERE e > v_now);
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

-- The claim (and completion) entry point from now on: list_complete_and_claim of 0012 plus the
-- limits. A list without limits pays one primary-key probe of list_settings and runs 0012's
-- claim as it was (copied below); a list with limits completes through list_settle_limited and
-- claims through list_claim_limited. p_key_concurrency / p_concurrency: a claim's own, tighter
-- limits (only on a list with stored limits). o_next_at as in list_claim_limited (NULL on the
-- unlimited path: an insert wakes the workers).
CREATE FUNCTION {{schema}}.list_claim(
  p_list text,
  p_items text[],
  p_tokens bigint[],
  p_ctids tid[],
  p_limit integer,
  p_lease_ms double precision,
  p_max_attempts integer,
  p_key_concurrency integer,
  p_concurrency integer
)
RETURNS TABLE (
  o_completed text[],
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
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
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
  -- The one probe the unlimited path pays: a primary-key lookup in list_settings.
  PERFORM 1 FROM {{schema}}.list_settings AS s
  WHERE s.list = p_list
    AND (s.key_concurrency IS NOT NULL OR s.key_rate_limit IS NOT NULL OR s.concurrency IS NOT NULL);
  IF FOUND THEN
    IF cardinality(p_items) > 0 THEN
      SELECT coalesce(array_agg(d.o_item), '{}') INTO v_done
      FROM {{schema}}.list_settle_limited(p_list, 1, p_items, p_tokens, 0, 0) AS d;
    END IF;
    IF p_limit <= 0 THEN
      RETURN QUERY SELECT v_done, '{}'::text[], '{}'::tid[], '{}'::integer[], NULL::bigint,
        NULL::timestamptz, '{}'::text[], '{}'::text[], NULL::timestamptz;
      RETURN;
    END IF;
    RETURN QUERY SELECT v_done, c.o_items, c.o_ctids, c.o_attempts, c.o_token, c.o_lease_until,
      c.o_expired, c.o_dead, c.o_next_at
    FROM {{schema}}.list_claim_limited(p_list, p_limit, p_lease_ms, p_max_attempts,
      p_key_concurrency, p_concurrency) AS c;
    RETURN;
  END IF;
  IF p_key_concurrency IS NOT NULL OR p_concurrency IS NOT NULL THEN
    RAISE EXCEPTION 'list % has no limits: a claim''s limits only tighten the stored ones',
      quote_literal(p_list) USING ERRCODE = '22023';
  END IF;
  -- No limits: 0012's claim, unchanged from here on.
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
    v_expired, v_dead, NULL::timestamptz;
END
$fn$;

-- Processes of the previous release call list_complete_and_claim: it now goes through
-- list_claim, so they obey the limits too.
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
  o_completed text[],
  o_items text[],
  o_ctids tid[],
  o_attempts integer[],
  o_token bigint,
  o_lease_until timestamptz,
  o_expired text[],
  o_dead text[]
)
LANGUAGE sql
VOLATILE
AS $fn$
  SELECT c.o_completed, c.o_items, c.o_ctids, c.o_attempts, c.o_token, c.o_lease_until,
    c.o_expired, c.o_dead
  FROM {{schema}}.list_claim(p_list, p_items, p_tokens, p_ctids, p_limit, p_lease_ms,
    p_max_attempts, NULL, NULL) AS c;
$fn$;
