// The service on a ClusterPool: routes, readiness and the LISTEN connection dialed to the primary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterPool } from '../../src/index.js';
import { createServer, type PgcoordServer } from '../../src/server/index.js';
import { isMultiHost } from '../../src/cli/serve-command.js';
import { useTestDatabase } from '../helpers/db.js';
import { openSse } from '../support/sse.js';

const db = useTestDatabase();
let cluster: ClusterPool;
let server: PgcoordServer;
let base: string;

beforeAll(async () => {
  cluster = new ClusterPool({ connectionString: db.url, maxConnectionsPerInstance: 4 });
  server = await createServer({ pool: cluster, port: 0, logger: false });
  base = await server.listen();
});
afterAll(async () => {
  await server?.close();
  await cluster?.end();
});

describe('createServer on a ClusterPool', () => {
  it('serves lists, readiness and notification streams', async () => {
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const add = await fetch(`${base}/iidy/v1/batch/lists/c`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'a\nb\n',
    });
    expect(await add.text()).toBe('ADDED 2\n');
    const sse = await openSse(`${base}/v1/channels/cl/events`);
    try {
      await sse.next((e) => e.event === 'ready');
      await fetch(`${base}/v1/channels/cl/notifications`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"payload":"via primary"}',
      });
      expect((await sse.next((e) => e.event === 'notification')).data).toBe('via primary');
    } finally {
      sse.close();
    }
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/pgcoord_pool_connections\{state="total"\} \d+/);
  });

  it('recognizes multi-host URLs', () => {
    expect(isMultiHost('postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write')).toBe(
      true,
    );
    expect(isMultiHost('postgres://u:p,x@h1:5432/db')).toBe(false);
    expect(isMultiHost('postgres://h1/db')).toBe(false);
  });
});
