-- Live workers: a row per running Worker (list.work()), so operators and the service can see who
-- works which list. The worker inserts its row when it starts, refreshes heartbeat_at and
-- in_flight on a timer (one upsert, off the claim path), and deletes it when it stops. A worker
-- that dies without stopping (SIGKILL, lost host) leaves its row behind: expires_at says when the
-- row stops counting as live (the worker's last refresh plus its own horizon, so workers with
-- different horizons coexist), readers skip rows past it, and every refresh of any worker also
-- deletes such rows. Times are the server's clock. IF NOT EXISTS: a schema whose migration
-- records were lost takes this file again cleanly.
CREATE TABLE IF NOT EXISTS {{schema}}.list_workers (
  -- Chosen by the worker (a random UUID), so it is known before the first write.
  id uuid PRIMARY KEY,
  list text COLLATE "C" NOT NULL,
  -- Where the worker runs: os.hostname() and process.pid.
  host text NOT NULL,
  pid integer NOT NULL,
  -- Most handlers in flight at once, and how many were running at the last refresh.
  concurrency integer NOT NULL,
  in_flight integer NOT NULL,
  started_at timestamptz NOT NULL,
  heartbeat_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
) WITH (
  -- Every refresh rewrites its row: room for the new version on the same page (a HOT update).
  fillfactor = 50
);

-- No index beyond the key: the table holds a row per running worker (hundreds, not millions), so
-- reads and the prune scan it, and a refresh, which changes no indexed column, stays a HOT update.
