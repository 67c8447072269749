// Runs once before the suite: makes sure there is a PostgreSQL to test against. With DATABASE_URL
// set, that server is used. Otherwise the local server (127.0.0.1:5432, user postgres) is used when
// it answers, and when nothing answers the suite starts the same embedded PostgreSQL that
// `pgcoord serve` runs, for the whole run (each test file still makes its own database on it).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { canConnect, EmbeddedDatabase } from '../../src/cli/embedded-database.js';
import { redactConnectionString } from '../../src/core/connection.js';

const LOCAL_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export default async function setup(): Promise<(() => Promise<void>) | void> {
  if (process.env.DATABASE_URL) return;
  if (await canConnect(LOCAL_URL)) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-test-pg-'));
  // The server may run as another OS user (postgres, when the suite runs as root).
  fs.chmodSync(dir, 0o755);
  const db = await EmbeddedDatabase.start({ dir });
  // Like the machine's own test server: trust on loopback, so tests that build connection settings
  // from parts (a user and a port, no password) connect as they do there.
  const hba = path.join(dir, 'data', 'pg_hba.conf');
  fs.writeFileSync(
    hba,
    'host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n' +
      fs.readFileSync(hba, 'utf8'),
  );
  const admin = new pg.Client({ connectionString: db.url });
  admin.on('error', () => undefined);
  await admin.connect();
  await admin.query('SELECT pg_reload_conf()');
  await admin.end();
  // Set before vitest forks its workers, so every test file (and the processes they start) sees it.
  process.env.DATABASE_URL = db.url;
  console.log(
    `tests: nothing answers at ${LOCAL_URL} and DATABASE_URL is unset: running on an embedded PostgreSQL at ${redactConnectionString(db.url)}`,
  );
  return async () => {
    await db.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
}
