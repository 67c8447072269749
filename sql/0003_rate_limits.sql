-- Rate-limiter state: one row per (limiter, quota, key). Columns are generic; each algorithm
-- reads them its own way (see src/rate-limit-algorithms.ts):
--   fixed window    t = window start, a = count
--   sliding window  t = current window start, a = current count, b = previous window count
--   token bucket    t = last update, a = tokens left
--   leaky bucket    t = last update, a = level
--   GCRA            t = last update, a = theoretical arrival time minus t
-- Times are milliseconds since the Unix epoch on the server clock. No index but the primary key:
-- an index on expires_ms would turn every decision into a non-HOT update.
CREATE TABLE {{schema}}.rate_limits (
  key text PRIMARY KEY,
  a double precision,
  b double precision,
  t double precision,
  -- When the row is back to its initial state and may be deleted (ms since epoch).
  expires_ms double precision
) WITH (fillfactor = 80);

-- Same shape, UNLOGGED: no WAL, so faster, but emptied after a crash (counters reset to full).
CREATE UNLOGGED TABLE {{schema}}.rate_limits_unlogged (
  key text PRIMARY KEY,
  a double precision,
  b double precision,
  t double precision,
  expires_ms double precision
) WITH (fillfactor = 80);

-- Decides a batch of consume (or peek) calls of one limiter in one statement.
-- Items are decided in order; an item is allowed only when every quota allows it (all or
-- nothing). Rows are created, then locked in a fixed key order, before the clock is read, so
-- concurrent batches serialize per key and the result is exact. p_slot maps item i, quota q to
-- p_keys[p_slot[(i - 1) * Q + q]]; the same key may appear in many items of one batch.
-- p_algo: 1 fixed window, 2 sliding window, 3 token bucket, 4 leaky bucket, 5 GCRA.
CREATE FUNCTION {{schema}}.rate_limit_decide(
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
  eps constant double precision := 1e-6;
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
BEGIN
  IF p_write THEN
    IF p_unlogged THEN
      INSERT INTO {{schema}}.rate_limits_unlogged (key)
        SELECT k0 FROM unnest(p_keys) k0 ORDER BY k0 COLLATE "C" ON CONFLICT DO NOTHING;
      SELECT array_agg(x.a ORDER BY u.o), array_agg(x.b ORDER BY u.o), array_agg(x.t ORDER BY u.o)
        INTO sa, sb, st
        FROM unnest(p_keys) WITH ORDINALITY u(k0, o)
        LEFT JOIN (SELECT rl.key, rl.a, rl.b, rl.t FROM {{schema}}.rate_limits_unlogged rl
                   WHERE rl.key = ANY (p_keys) ORDER BY rl.key COLLATE "C" FOR UPDATE) x
          ON x.key = u.k0;
    ELSE
      INSERT INTO {{schema}}.rate_limits (key)
        SELECT k0 FROM unnest(p_keys) k0 ORDER BY k0 COLLATE "C" ON CONFLICT DO NOTHING;
      SELECT array_agg(x.a ORDER BY u.o), array_agg(x.b ORDER BY u.o), array_agg(x.t ORDER BY u.o)
        INTO sa, sb, st
        FROM unnest(p_keys) WITH ORDINALITY u(k0, o)
        LEFT JOIN (SELECT rl.key, rl.a, rl.b, rl.t FROM {{schema}}.rate_limits rl
                   WHERE rl.key = ANY (p_keys) ORDER BY rl.key COLLATE "C" FOR UPDATE) x
          ON x.key = u.k0;
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
        ok := est + c <= l + eps;
        IF ok THEN
          q_retry := 0;
        ELSIF oa + c <= l THEN
          -- Fits later in this window, once the previous window's weight has decayed enough.
          q_retry := ot + (1 - (l - oa - c) / ob) * p - v_now;
        ELSE
          -- Needs the next window, where this window's count weighs (1 - x).
          q_retry := ot + p + greatest(0, 1 - (l - c) / oa) * p - v_now;
        END IF;
      ELSIF p_algo = 3 THEN
        r := l / p;
        IF ot IS NULL THEN oa := bu;
        ELSE oa := least(bu, oa + greatest(0, v_now - ot) * r);
        END IF;
        ot := v_now;
        ok := oa + eps >= c;
        q_retry := (c - oa) / r;
      ELSIF p_algo = 4 THEN
        r := l / p;
        IF ot IS NULL THEN oa := 0;
        ELSE oa := greatest(0, oa - greatest(0, v_now - ot) * r);
        END IF;
        ot := v_now;
        ok := oa + c <= bu + eps;
        q_retry := (oa + c - bu) / r;
      ELSE
        r := p / l; -- emission interval
        IF ot IS NULL THEN oa := 0;
        ELSE oa := greatest(0, oa - greatest(0, v_now - ot));
        END IF;
        ot := v_now;
        ok := oa + c * r <= bu * r + eps;
        q_retry := oa + c * r - bu * r;
      END IF;
      pa[q] := oa; pb[q] := ob; pt[q] := ot;
      IF NOT ok THEN
        all_ok := false;
        v_retry := greatest(v_retry, q_retry);
      END IF;
    END LOOP;

    -- Phase 2: all or nothing; then report from the state that is kept.
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
      IF p_algo = 1 THEN
        q_rem := l - oa;
        q_reset := ot + p - v_now;
        se[s] := ot + p;
      ELSIF p_algo = 2 THEN
        est := ob * (1 - (v_now - ot) / p) + oa;
        q_rem := floor(l - est + eps);
        q_reset := CASE WHEN oa > 0 THEN ot + 2 * p - v_now
                        WHEN ob > 0 THEN ot + p - v_now ELSE 0 END;
        se[s] := ot + 2 * p;
      ELSIF p_algo = 3 THEN
        q_rem := floor(oa + eps);
        q_reset := (bu - oa) / (l / p);
        se[s] := v_now + q_reset;
      ELSIF p_algo = 4 THEN
        q_rem := floor(bu - oa + eps);
        q_reset := oa / (l / p);
        se[s] := v_now + q_reset;
      ELSE
        r := p / l;
        q_rem := floor((bu * r - oa) / r + eps);
        q_reset := oa;
        se[s] := v_now + oa;
      END IF;
      v_rem := least(v_rem, greatest(0, q_rem));
      v_reset := greatest(v_reset, q_reset);
      IF p_write THEN
        sa[s] := oa; sb[s] := ob; st[s] := ot;
      END IF;
    END LOOP;

    item := i;
    allowed := all_ok;
    remaining := CASE WHEN nq = 0 THEN 0 ELSE v_rem END;
    retry_after_ms := CASE WHEN all_ok THEN 0 ELSE greatest(0, v_retry) END;
    reset_after_ms := greatest(0, v_reset);
    RETURN NEXT;
  END LOOP;

  IF p_write THEN
    IF p_unlogged THEN
      UPDATE {{schema}}.rate_limits_unlogged rl
         SET a = u.a, b = u.b, t = u.t, expires_ms = u.e
        FROM unnest(p_keys, sa, sb, st, se) u(k0, a, b, t, e)
       WHERE rl.key = u.k0 AND u.t IS NOT NULL;
    ELSE
      UPDATE {{schema}}.rate_limits rl
         SET a = u.a, b = u.b, t = u.t, expires_ms = u.e
        FROM unnest(p_keys, sa, sb, st, se) u(k0, a, b, t, e)
       WHERE rl.key = u.k0 AND u.t IS NOT NULL;
    END IF;
  END IF;
END
$$;
