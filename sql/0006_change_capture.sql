-- Change capture: durable row changes of tracked tables, delivered once per consumer group.

-- Ids come from a sequence with CACHE 1, so they increase with real time across all sessions:
-- the consumers' low-water mark (see change_groups) relies on an id read from the sequence being
-- larger than every id allocated before that read.
CREATE SEQUENCE {{schema}}.change_ids AS bigint CACHE 1;

CREATE TABLE {{schema}}.changes (
  id bigint PRIMARY KEY,
  -- Writing transaction (top level), for visibility reasoning and for grouping by transaction.
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  schema_name text NOT NULL,
  table_name text NOT NULL,
  op text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
  pk jsonb,
  old jsonb,
  new jsonb,
  written_at timestamptz NOT NULL DEFAULT statement_timestamp()
);
-- The default refers to the sequence by oid (a regclass constant), whatever the schema's name.
DO $$
BEGIN
  EXECUTE format('ALTER TABLE %I.changes ALTER COLUMN id SET DEFAULT nextval(%L::regclass)',
                 {{schema_literal}}, quote_ident({{schema_literal}}) || '.change_ids');
END
$$;
ALTER SEQUENCE {{schema}}.change_ids OWNED BY {{schema}}.changes.id;

-- Tables under capture: one row per table, written by ChangeCapture.track().
CREATE TABLE {{schema}}.tracked_tables (
  table_oid oid PRIMARY KEY,
  schema_name text NOT NULL,
  table_name text NOT NULL,
  operations text[] NOT NULL,
  columns text[],
  pk_columns text[] NOT NULL,
  tracked_at timestamptz NOT NULL DEFAULT now()
);

-- One row per consumer group and partition (ordered mode: partition 0 of 1).
-- Position: every id <= low_water is delivered or will never exist; `delivered` holds the ids
-- above low_water that were delivered already (a change that commits late with a lower id than
-- one delivered stays outside it, so it is still delivered).
CREATE TABLE {{schema}}.change_groups (
  group_name text NOT NULL,
  partition integer NOT NULL,
  partitions integer NOT NULL,
  mode text NOT NULL CHECK (mode IN ('ordered', 'parallel')),
  low_water bigint NOT NULL,
  delivered int8multirange NOT NULL DEFAULT '{}',
  owner text,
  lease_expires_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  isolate integer NOT NULL DEFAULT 0,
  last_error text,
  delivered_count bigint NOT NULL DEFAULT 0,
  overrun_count bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, partition)
);

-- Changes a group gave up on after maxAttempts; `replay` puts them back in front of the group.
CREATE TABLE {{schema}}.change_dead_letters (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  group_name text NOT NULL,
  change_id bigint NOT NULL,
  change jsonb NOT NULL,
  attempts integer NOT NULL,
  last_error text,
  state text NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'replay')),
  failed_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (group_name, change_id)
);
CREATE INDEX change_dead_letters_replay ON {{schema}}.change_dead_letters (group_name, id)
  WHERE state = 'replay';
