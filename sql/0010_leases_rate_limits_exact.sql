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
