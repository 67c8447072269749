import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterPool, picodataSource, yugabyteSource } from '../../src/index.js';
import { serverConfig, useTestDatabase } from '../helpers/db.js';
import { startInstance, type PgInstance } from '../helpers/pg-instance.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

// Picodata and YugabyteDB cannot be installed here. Their discovery queries run against a real
// PostgreSQL holding tables and a function shaped like theirs; the instances they list are real
// PostgreSQL servers (the shared one and a private one), so the pool really connects to them.
const db = useTestDatabase({ migrate: false });
let other: PgInstance;
const pools: ClusterPool[] = [];
const shared = serverConfig();
const sharedKey = `${shared.host}:${shared.port}`;

beforeAll(async () => {
  other = await startInstance();
  const c = new pg.Client({ connectionString: other.url() });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE "${db.name}"`);
  } finally {
    await c.end();
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  other?.destroy();
});

function makePool(source: NonNullable<ConstructorParameters<typeof ClusterPool>[0]['source']>) {
  const pool = new ClusterPool({
    hosts: [{ host: String(shared.host), port: Number(shared.port) }],
    connection: {
      user: shared.user,
      password: shared.password,
      database: db.name,
      application_name: 'pgcoord_sources',
    },
    refreshIntervalMs: 200,
    maxConnectionsPerInstance: 2,
    failoverTimeoutMs: 5_000,
    source,
  });
  pools.push(pool);
  return pool;
}

async function connectionsOn(inst: PgInstance): Promise<number> {
  const c = new pg.Client({ connectionString: inst.url() });
  await c.connect();
  try {
    const { rows } = await c.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [db.name],
    );
    return rows[0]!.n;
  } finally {
    await c.end();
  }
}

async function port(q: { query: ClusterPool['query'] }): Promise<number> {
  return (await q.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port;
}

describe('Picodata discovery (tables shaped like _pico_peer_address and _pico_instance)', () => {
  it('uses Online pgproto instances, keeps Offline ones down, drops Expelled ones and closes their pools', async () => {
    await db.pool.query(`
      CREATE TABLE _pico_instance (raft_id int PRIMARY KEY, name text, current_state json, target_state json);
      CREATE TABLE _pico_peer_address (raft_id int, address text, connection_type text);
      INSERT INTO _pico_instance VALUES
        (1, 'i1', '["Online", 1]', '["Online", 1]'),
        (2, 'i2', '["Online", 3]', '["Online", 3]'),
        (3, 'i3', '["Expelled", 1]', '["Expelled", 1]'),
        (4, 'i4', '["Offline", 2]', '["Online", 2]'),
        (5, 'i5', '["Offline", 1]', '["Offline", 1]');
      INSERT INTO _pico_peer_address VALUES
        (1, '${sharedKey}', 'pgproto'), (1, '127.0.0.1:3301', 'iproto'),
        (2, '127.0.0.1:${other.port}', 'pgproto'),
        (3, '127.0.0.1:1', 'pgproto'),
        (4, '127.0.0.1:2', 'pgproto'),
        (5, '${sharedKey}', 'pgproto');`);
    const pool = makePool(picodataSource());
    const view = await pool.refresh();
    expect(view.map((v) => [v.key, v.role, v.health]).sort()).toEqual(
      [
        [sharedKey, 'primary', 'up'],
        [`127.0.0.1:${other.port}`, 'primary', 'up'],
        ['127.0.0.1:2', 'primary', 'down'],
      ].sort(),
    );
    const ports = new Set<number>();
    for (let i = 0; i < 10; i++) ports.add(await port(pool));
    expect(ports).toEqual(new Set([Number(shared.port), other.port]));
    expect(await connectionsOn(other)).toBeGreaterThan(0);

    const change = nextEvent<unknown[]>(pool, 'topology');
    await db.pool.query(
      `UPDATE _pico_instance SET target_state = '["Expelled", 3]' WHERE raft_id = 2`,
    );
    await change;
    expect(pool.topology().map((v) => v.key)).not.toContain(`127.0.0.1:${other.port}`);
    await waitFor(async () => (await connectionsOn(other)) === 0, {
      timeoutMs: 10_000,
      message: 'the expelled instance pool and discovery connection to close',
    });
    for (let i = 0; i < 4; i++) expect(await port(pool)).toBe(Number(shared.port));

    // A failing source keeps the last topology and says so.
    const failed = nextEvent<Error>(pool, 'topology:error');
    await db.pool.query('ALTER TABLE _pico_peer_address RENAME TO _pico_peer_address_gone');
    expect((await failed).message).toMatch(/_pico_peer_address/);
    expect(await port(pool)).toBe(Number(shared.port));
    await pool.end();
  });
});

describe('YugabyteDB discovery (a function shaped like yb_servers())', () => {
  it('writes to primary nodes, reads from read replicas, filters placements, uses public_ip', async () => {
    await db.pool.query(`
      CREATE FUNCTION yb_servers() RETURNS TABLE (host text, port bigint, num_connections int,
        node_type text, cloud text, region text, zone text, public_ip text, uuid text)
      LANGUAGE sql AS $$ VALUES
        ('${shared.host}'::text, ${shared.port}::bigint, 0, 'primary'::text, 'aws'::text, 'r1'::text, 'z1'::text, '${shared.host}'::text, 'u1'::text),
        ('node2.invalid', ${other.port}, 0, 'read_replica', 'aws', 'r1', 'z2', '127.0.0.1', 'u2'),
        ('node3.invalid', 5, 0, 'primary', 'gcp', 'r9', 'z9', '127.0.0.1', 'u3') $$`);
    const pool = makePool(yugabyteSource({ usePublicIp: true, placements: ['aws.*.*'] }));
    const view = await pool.refresh();
    expect(view.map((v) => [v.key, v.role, v.labels.zone])).toEqual([
      [sharedKey, 'primary', 'z1'],
      [`127.0.0.1:${other.port}`, 'standby', 'z2'],
    ]);
    expect(await port(pool)).toBe(Number(shared.port));
    expect(await port(pool.reader)).toBe(other.port);

    const all = makePool(yugabyteSource());
    const keys = (await all.refresh()).map((v) => v.key);
    expect(keys).toEqual([sharedKey, `node2.invalid:${other.port}`, 'node3.invalid:5']);
    await all.end();
    await pool.end();
  });
});
