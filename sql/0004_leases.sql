-- Leases with fencing tokens. A row is never deleted (release only clears the holder), so the
-- token of a name only ever grows, across every holder, for the life of the schema.
CREATE TABLE {{schema}}.leases (
  name text PRIMARY KEY,
  owner text,
  token bigint NOT NULL,
  -- NULL = free. A lease whose expires_at has passed is free to acquire (server clock).
  expires_at timestamptz,
  acquired_at timestamptz
);
