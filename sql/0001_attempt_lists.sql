-- Attempt lists: named lists of string items with attempt counts, claimable with leases.
--
-- One row per (list, item). The claim state lives in two columns:
--   run_at  '-infinity'  ready: never claimed, released, or failed without a retry delay
--           a timestamp  leased until then (token set), or waiting out a retry delay (token null);
--                        claimable once it is <= now() (server clock)
--           NULL         dead: reached maxAttempts; never claimed until requeued
--   token   the current claim's token; a complete/fail/release/extend must present it
--
-- Why '-infinity' rather than the insert time for ready items: every ready item of a list then
-- shares one key in list_items_claim, so B-tree deduplication stores them as posting lists in
-- heap order. When claims take items from the head, the index entries they leave behind die in
-- whole posting lists that scans skip cheaply, instead of one dead entry per claimed item that
-- every later claim would have to step over until VACUUM runs (measured: 500k completed items
-- with distinct timestamps made each claim read ~1,900 index pages; with one shared key, ~70).
CREATE SEQUENCE {{schema}}.list_token_seq;

CREATE TABLE {{schema}}.list_items (
  list text COLLATE "C" NOT NULL,
  item text COLLATE "C" NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  run_at timestamptz DEFAULT '-infinity',
  token bigint,
  PRIMARY KEY (list, item)
) WITH (
  -- Room on each page for HOT updates of attempts (increment) without touching the indexes.
  fillfactor = 90,
  -- A queue table churns: vacuum it after a small fraction of its rows died, without throttling.
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.05,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);

-- Claims: claimable items of a list, ready ones first; dead items (run_at NULL) are not indexed.
CREATE INDEX list_items_claim ON {{schema}}.list_items (list, run_at) WHERE run_at IS NOT NULL;

-- Dead items of a list, in byte order, for listing and requeueing.
CREATE INDEX list_items_dead ON {{schema}}.list_items (list, item) WHERE run_at IS NULL;
