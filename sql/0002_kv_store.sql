-- Key-value store with optional expiry, decided on the server clock.
CREATE TABLE {{schema}}.kv (
  key text PRIMARY KEY,
  value text NOT NULL,
  -- NULL = never expires. A row whose expires_at has passed is treated as absent by every read.
  expires_at timestamptz
);

-- purgeExpired and the reaper walk expired rows oldest first without a sequential scan.
CREATE INDEX kv_expires_at_idx ON {{schema}}.kv (expires_at) WHERE expires_at IS NOT NULL;

-- Batched compare-and-swap used by KvStore.update(): one statement decides many keys, returning
-- (by input position) the live value after each attempt so a losing caller can retry without a separate read.
-- Each key's row is locked before it is compared (FOR UPDATE sees the newest committed version),
-- keys are taken in a fixed order so concurrent batches cannot deadlock.
CREATE FUNCTION {{schema}}.kv_swap(
  p_keys text[],
  p_expected text[],      -- NULL element = expect absent or expired
  p_next text[],
  p_ttl_ms double precision[] -- NULL element = never expires
) RETURNS TABLE (idx int, ok boolean, current_value text)
LANGUAGE plpgsql AS $$
DECLARE
  i int;
  v_value text;
  v_live boolean;
  v_now timestamptz;
  v_exp timestamptz;
BEGIN
  FOR i IN SELECT o FROM generate_subscripts(p_keys, 1) o ORDER BY p_keys[o] COLLATE "C" LOOP
    idx := i;
    -- Make sure a row exists to lock, without touching a live one.
    IF p_expected[i] IS NULL THEN
      INSERT INTO {{schema}}.kv AS t (key, value, expires_at)
      VALUES (p_keys[i], p_next[i], CASE WHEN p_ttl_ms[i] IS NULL THEN NULL
              ELSE clock_timestamp() + p_ttl_ms[i] * interval '1 millisecond' END)
      ON CONFLICT (key) DO NOTHING;
      IF FOUND THEN
        ok := true; current_value := p_next[i];
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;
    SELECT t.value, (t.expires_at IS NULL OR t.expires_at > clock_timestamp())
      INTO v_value, v_live
      FROM {{schema}}.kv t WHERE t.key = p_keys[i] FOR UPDATE;
    IF NOT FOUND OR NOT v_live THEN
      v_value := NULL;
    END IF;
    IF v_value IS NOT DISTINCT FROM p_expected[i] THEN
      v_now := clock_timestamp();
      v_exp := CASE WHEN p_ttl_ms[i] IS NULL THEN NULL
               ELSE v_now + p_ttl_ms[i] * interval '1 millisecond' END;
      INSERT INTO {{schema}}.kv AS t (key, value, expires_at)
      VALUES (p_keys[i], p_next[i], v_exp)
      ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at;
      ok := true; current_value := p_next[i];
    ELSE
      ok := false; current_value := v_value;
    END IF;
    RETURN NEXT;
  END LOOP;
END
$$;
