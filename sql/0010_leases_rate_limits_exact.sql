-- Two exactness fixes: leases (functions lease_acquire, lease_renew, lease_release) and rate
-- limits (rate_limit_decide replaced, further down). Functions only: no table changes.
--
-- Leases are granted, renewed and released as of the moment the call holds the lease row.
--
-- Until now each was one statement whose times were read before it waited: an INSERT .. ON
-- CONFLICT computed the new expiry in VALUES (before waiting for a concurrent first insert of
-- the name), and an UPDATE computes its new row before it waits for a row lock held by another
-- transaction (say a failed acquire inside a still open transaction). So a call that waited
-- longer than the ttl returned a lease that had already expired, and a renew or release that
-- waited acted on a lease that had run out meanwhile.
--
-- Each function below first waits for the row (a concurrent first insert, then the row lock);
-- only then does it read the clock, and it decides and writes in a statement that starts after
-- the wait, so it sees the row as it is when the call gets it. Still one round trip per call.

-- Takes the lease when free or expired: returns the new token and expiry, or no row when held.
CREATE OR REPLACE FUNCTION {{schema}}.lease_acquire(p_name text, p_owner text,
                                                    p_ttl_ms double precision)
RETURNS TABLE (token bigint, expires_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  -- Waits for a concurrent first insert of the name; when that rolls back, a free row (token 0,
  -- so the first lease still gets token 1) takes its place.
  INSERT INTO {{schema}}.leases (name, token) VALUES (p_name, 0) ON CONFLICT (name) DO NOTHING;
  PERFORM 1 FROM {{schema}}.leases l WHERE l.name = p_name FOR UPDATE;
  RETURN QUERY
    UPDATE {{schema}}.leases l
       SET owner = p_owner, token = l.token + 1,
           expires_at = clock_timestamp() + p_ttl_ms * interval '1 millisecond',
           acquired_at = clock_timestamp()
     WHERE l.name = p_name AND (l.expires_at IS NULL OR l.expires_at <= clock_timestamp())
    RETURNING l.token, l.expires_at;
END
$$;

-- Extends the lease holding token p_token by p_ttl_ms from now: returns its owner and new
-- expiry, or no row when that token no longer holds a live lease.
CREATE OR REPLACE FUNCTION {{schema}}.lease_renew(p_name text, p_token bigint,
                                                  p_ttl_ms double precision)
RETURNS TABLE (owner text, expires_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  PERFORM 1 FROM {{schema}}.leases l WHERE l.name = p_name FOR UPDATE;
  RETURN QUERY
    UPDATE {{schema}}.leases l
       SET expires_at = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
     WHERE l.name = p_name AND l.token = p_token AND l.expires_at > clock_timestamp()
    RETURNING l.owner, l.expires_at;
END
$$;

-- Frees the lease holding token p_token: true, or false when that token no longer holds a live
-- lease. The row stays, so the name's tokens keep growing.
CREATE OR REPLACE FUNCTION {{schema}}.lease_release(p_name text, p_token bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  PERFORM 1 FROM {{schema}}.leases l WHERE l.name = p_name FOR UPDATE;
  UPDATE {{schema}}.leases l SET owner = NULL, expires_at = NULL
   WHERE l.name = p_name AND l.token = p_token AND l.expires_at > clock_timestamp();
  RETURN FOUND;
END
$$;

-- Rate limits: tolerances relative to the cost and consistent with remaining; a denied call
-- writes nothing. rate_limit_decide (the general path: several quotas, or mixed costs on one
-- key) is replaced; the set-based statement (src/coordination/rate-limit-algorithms.ts) follows
-- the same rules.
--
-- 1. A request is allowed when the units available cover its cost up to one part in 1e12 of
--    the cost (floating error, nothing more). The tolerance was 1e-6 units (1e-6 ms for GCRA):
--    1 per 366 days was admitted 30 s early, and GCRA's time tolerance was 1,000 units at
--    1e9 per ms. remaining is the largest cost that check allows, by the same expression, so a
--    denial of cost c never reports remaining >= c.
-- 2. A denied call writes no quota's state: with several fixed-window quotas, a call denied by
--    one opened a new (empty) window in another whose window had ended.
-- 3. A fixed window with nothing in it is full: its resetAfterMs is 0, not the whole period.

-- Decides a batch of consume (or peek) calls of one limiter in one call. Items are decided in
-- order; an item is allowed only when every quota allows it (all or nothing). Rows are created or
-- locked before the clock is read, so concurrent batches serialize per key and the result is
-- exact. p_slot maps item i, quota q to p_keys[p_slot[(i - 1) * Q + q]]; the same key may appear
-- in many items of one batch. p_algo: 1 fixed window, 2 sliding window, 3 token bucket, 4 leaky
-- bucket, 5 GCRA.
CREATE OR REPLACE FUNCTION {{schema}}.rate_limit_decide(
  p_unlogged boolean,
  p_write boolean,
  p_algo int,
  p_limit double precision[],
  p_period double precision[],
  p_burst double precision[],
  p_keys text[],
  p_slot int[],
  p_cost double precision[],
  p_now double precision
) RETURNS TABLE (item int, allowed boolean, remaining double precision,
                 retry_after_ms double precision, reset_after_ms double precision)
LANGUAGE plpgsql AS $$
DECLARE
  -- Shortfall forgiven, as a fraction of the cost: floating error, nothing more (see above).
  eps constant double precision := 1e-12;
  nq int := coalesce(array_length(p_limit, 1), 0);
  ni int := coalesce(array_length(p_cost, 1), 0);
  sa double precision[];
  sb double precision[];
  st double precision[];
  se double precision[];
  pa double precision[];
  pb double precision[];
  pt double precision[];
  v_now double precision;
  i int; q int; s int;
  c double precision; l double precision; p double precision; bu double precision;
  r double precision; w double precision; est double precision; k double precision;
  oa double precision; ob double precision; ot double precision;
  all_ok boolean; ok boolean;
  v_rem double precision; v_retry double precision; v_reset double precision;
  q_rem double precision; q_retry double precision; q_reset double precision;
  q_exp double precision;
BEGIN
  IF p_write THEN
    IF p_unlogged THEN
      WITH locked AS (
        INSERT INTO {{schema}}.rate_limits_unlogged AS rl (key)
          SELECT k0 FROM unnest(p_keys) k0 ORDER BY k0 COLLATE "C"
          ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
          RETURNING rl.key, rl.a, rl.b, rl.t)
      SELECT array_agg(x.a ORDER BY u.o), array_agg(x.b ORDER BY u.o), array_agg(x.t ORDER BY u.o)
        INTO sa, sb, st
        FROM unnest(p_keys) WITH ORDINALITY u(k0, o) JOIN locked x ON x.key = u.k0;
    ELSE
      WITH locked AS (
        INSERT INTO {{schema}}.rate_limits AS rl (key)
          SELECT k0 FROM unnest(p_keys) k0 ORDER BY k0 COLLATE "C"
          ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
          RETURNING rl.key, rl.a, rl.b, rl.t)
      SELECT array_agg(x.a ORDER BY u.o), array_agg(x.b ORDER BY u.o), array_agg(x.t ORDER BY u.o)
        INTO sa, sb, st
        FROM unnest(p_keys) WITH ORDINALITY u(k0, o) JOIN locked x ON x.key = u.k0;
    END IF;
  ELSIF p_unlogged THEN
    SELECT array_agg(x.a ORDER BY u.o), array_agg(x.b ORDER BY u.o), array_agg(x.t ORDER BY u.o)
      INTO sa, sb, st
      FROM unnest(p_keys) WITH ORDINALITY u(k0, o)
      LEFT JOIN {{schema}}.rate_limits_unlogged x ON x.key = u.k0;
  ELSE
    SELECT array_agg(x.a ORDER BY u.o), array_agg(x.b ORDER BY u.o), array_agg(x.t ORDER BY u.o)
      INTO sa, sb, st
      FROM unnest(p_keys) WITH ORDINALITY u(k0, o)
      LEFT JOIN {{schema}}.rate_limits x ON x.key = u.k0;
  END IF;
  se := array_fill(NULL::double precision, ARRAY[coalesce(array_length(p_keys, 1), 0)]);

  -- The clock is read once the rows are locked, so a batch that waited sees a later time.
  v_now := coalesce(p_now, extract(epoch FROM clock_timestamp())::double precision * 1000);

  FOR i IN 1 .. ni LOOP
    c := p_cost[i];
    all_ok := true;
    v_retry := 0;
    -- Phase 1: bring each quota's state forward to now and see whether it allows the cost.
    FOR q IN 1 .. nq LOOP
      s := p_slot[(i - 1) * nq + q];
      l := p_limit[q]; p := p_period[q]; bu := p_burst[q];
      oa := sa[s]; ob := sb[s]; ot := st[s];
      IF p_algo = 1 THEN
        IF ot IS NULL OR v_now >= ot + p THEN oa := 0; ot := v_now; END IF;
        ok := oa + c <= l;
        q_retry := ot + p - v_now;
      ELSIF p_algo = 2 THEN
        IF ot IS NULL THEN
          oa := 0; ob := 0; ot := v_now;
        ELSIF v_now >= ot + p THEN
          k := floor((v_now - ot) / p);
          ob := CASE WHEN k = 1 THEN oa ELSE 0 END;
          oa := 0;
          ot := ot + k * p;
        END IF;
        w := 1 - (v_now - ot) / p;
        est := ob * w + oa;
        ok := c <= (l - est) / (1 - eps);
        IF ok THEN
          q_retry := 0;
        ELSIF oa + c <= l THEN
          -- Fits later in this window, once the previous window's weight has decayed enough.
          q_retry := ot + (1 - (l - oa - c) / nullif(ob, 0)) * p - v_now;
        ELSE
          -- Needs the next window, where this window's count weighs (1 - x).
          q_retry := ot + p + greatest(0, 1 - (l - c) / nullif(oa, 0)) * p - v_now;
        END IF;
      ELSIF p_algo = 3 THEN
        r := l / p;
        IF ot IS NULL THEN oa := bu;
        ELSE oa := least(bu, oa + greatest(0, v_now - ot) * r);
        END IF;
        ot := v_now;
        ok := c <= oa / (1 - eps);
        q_retry := (c - oa) / r;
      ELSIF p_algo = 4 THEN
        r := l / p;
        IF ot IS NULL THEN oa := 0;
        ELSE oa := greatest(0, oa - greatest(0, v_now - ot) * r);
        END IF;
        ot := v_now;
        ok := c <= (bu - oa) / (1 - eps);
        q_retry := (oa + c - bu) / r;
      ELSE
        r := p / l; -- emission interval
        IF ot IS NULL THEN oa := 0;
        ELSE oa := greatest(0, oa - greatest(0, v_now - ot));
        END IF;
        ot := v_now;
        -- In units, like every other algorithm and like remaining below.
        ok := c <= (bu - oa / r) / (1 - eps);
        q_retry := oa + c * r - bu * r;
      END IF;
      pa[q] := oa; pb[q] := ob; pt[q] := ot;
      IF NOT ok THEN
        all_ok := false;
        v_retry := greatest(v_retry, q_retry);
      END IF;
    END LOOP;

    -- Phase 2: all or nothing; then report from the state that is kept. A denied call writes
    -- nothing: for the other algorithms the state brought forward to now is the same state, but
    -- a fixed window brought forward is a new window opened at the time of a denied call.
    v_rem := 'Infinity';
    v_reset := 0;
    FOR q IN 1 .. nq LOOP
      s := p_slot[(i - 1) * nq + q];
      l := p_limit[q]; p := p_period[q]; bu := p_burst[q];
      oa := pa[q]; ob := pb[q]; ot := pt[q];
      IF all_ok THEN
        IF p_algo = 3 THEN oa := greatest(0, oa - c);
        ELSIF p_algo = 5 THEN oa := oa + c * (p / l);
        ELSE oa := oa + c;
        END IF;
      END IF;
      -- remaining is the largest cost the check above would allow: the same expression.
      IF p_algo = 1 THEN
        q_rem := l - oa;
        -- An empty window is full already.
        q_reset := CASE WHEN oa > 0 THEN ot + p - v_now ELSE 0 END;
        q_exp := ot + p;
      ELSIF p_algo = 2 THEN
        est := ob * (1 - (v_now - ot) / p) + oa;
        q_rem := floor((l - est) / (1 - eps));
        q_reset := CASE WHEN oa > 0 THEN ot + 2 * p - v_now
                        WHEN ob > 0 THEN ot + p - v_now ELSE 0 END;
        q_exp := ot + 2 * p;
      ELSIF p_algo = 3 THEN
        q_rem := floor(oa / (1 - eps));
        q_reset := (bu - oa) / (l / p);
        q_exp := v_now + q_reset;
      ELSIF p_algo = 4 THEN
        q_rem := floor((bu - oa) / (1 - eps));
        q_reset := oa / (l / p);
        q_exp := v_now + q_reset;
      ELSE
        r := p / l;
        q_rem := floor((bu - oa / r) / (1 - eps));
        q_reset := oa;
        q_exp := v_now + oa;
      END IF;
      v_rem := least(v_rem, greatest(0, q_rem));
      v_reset := greatest(v_reset, q_reset);
      IF p_write AND all_ok THEN
        sa[s] := oa; sb[s] := ob; st[s] := ot; se[s] := q_exp;
      END IF;
    END LOOP;

    item := i;
    allowed := all_ok;
    remaining := CASE WHEN nq = 0 THEN 0 ELSE v_rem END;
    retry_after_ms := CASE WHEN all_ok THEN 0 ELSE greatest(0, v_retry) END;
    reset_after_ms := greatest(0, v_reset);
    RETURN NEXT;
  END LOOP;

  -- Rows only denied keep their state and expiry; one created here and never allowed (still
  -- fresh, so full) expires at once, for purgeExpired.
  IF p_write THEN
    IF p_unlogged THEN
      UPDATE {{schema}}.rate_limits_unlogged rl
         SET a = u.a, b = u.b, t = u.t, expires_ms = coalesce(u.e, rl.expires_ms, v_now)
        FROM unnest(p_keys, sa, sb, st, se) u(k0, a, b, t, e)
       WHERE rl.key = u.k0;
    ELSE
      UPDATE {{schema}}.rate_limits rl
         SET a = u.a, b = u.b, t = u.t, expires_ms = coalesce(u.e, rl.expires_ms, v_now)
        FROM unnest(p_keys, sa, sb, st, se) u(k0, a, b, t, e)
       WHERE rl.key = u.k0;
    END IF;
  END IF;
END
$$;
