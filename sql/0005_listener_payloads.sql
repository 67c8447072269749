-- Payloads too large for NOTIFY (7999 bytes): the notification carries the row's id and the
-- listener reads the payload here. Rows are deleted by age on the server clock (created_at),
-- by later large-payload notifications and by purgeListenerPayloads().
CREATE TABLE IF NOT EXISTS {{schema}}.listener_payloads (
  id uuid PRIMARY KEY,
  channel text NOT NULL,
  payload text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS listener_payloads_created_at_idx
  ON {{schema}}.listener_payloads (created_at);
