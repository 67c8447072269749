// Migrations are append-only by test, not by discipline: every landed file is pinned by its
// sha256; the bundled copy the migrator runs is the files; the checked-in schema dump is what a
// fresh database gets.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadMigrations } from '../../src/index.js';
import { SCHEMA_FILE, dumpSchema, renderSchemaFile } from '../../scripts/schema-dump.js';
import { useTestDatabase } from '../helpers/db.js';

/**
 * sha256 of every landed migration. When a migration lands, add its line (the failure message
 * prints it). A pinned line never changes: a landed migration never changes.
 */
const PINNED: Readonly<Record<string, string>> = {
  '0001_attempt_lists.sql': '967ecf0888c5693e59fb7ac7412ed55dae3887611f66a6b008505ba00854fa3b',
  '0002_kv_store.sql': 'f96df3319b19bfe24fee5929fe19a8597bc38efdcdf3ccac882786c65d1cc15c',
  '0003_rate_limits.sql': '1e5b8671f4c31fc2dcc3311dfa6dc5712094c7416c75204050df0110081bee24',
  '0004_leases.sql': '0ee79bd54f5a1004c32b50d4cb0e8a6e67e174370f1ef7ac36915b15c256b344',
  '0005_listener_payloads.sql': '78fa22abde475805c31d86434d5072505161038f6383cacb5b96f28acf72d343',
  '0006_change_capture.sql': '018361fa0b05a0aaaa4f47e2da59a4d730a37d05d9a7ad5937c5713202f57baa',
  '0007_attempt_list_claims.sql':
    '9ed27f9bd721a74ef3e3c8d21d898af95759e479ff4883611f2c7ae3ee2a8b94',
  '0008_attempt_list_complete_first.sql':
    'c1681e652c3f4e554ff1a4d8fc705e83b35de06ffb32d581b46d317c8a7c486e',
  '0009_rate_limits_set_based.sql':
    'f35904f8ceb8f47a347a1b24f9dda6b8535780656f7ef355165b932dd1b47fc5',
  '0010_leases_rate_limits_exact.sql':
    '4f19415892486f7553069263f5ebdf0e0af5d36d9f24ba1048d51daf3959c5b0',
  '0011_schema_literal_repair.sql':
    '97f8d5a405630acb7235fd6af2a28ad24bc32c86a571f50d5cebaaa57a58ee39',
  '0012_attempt_list_schedule.sql':
    'da6579ffa09f5fbf9efb3c6d6bfd2237b77b8e618e5722001e7c56df812567ed',
  '0013_list_workers.sql': '4f5c88569b083cbed6aa997c7b794e2ef4b9a63408d96b46d2c616669b35c468',
  '0014_attempt_list_limits.sql':
    'c63e9921cf7cd5e67ff3fc94d7b4a65db3365c820d213fed8e820b27f63f73ce',
  '0015_attempt_list_limits_item_entries.sql':
    'cc3e821a746ad98379628a7e5424afd1237663e50922b9c46dba857d3278279d',
};

const SQL_DIR = path.resolve('sql');
const FILES = fs
  .readdirSync(SQL_DIR)
  .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
  .sort();

function sha256(file: string): string {
  return createHash('sha256')
    .update(fs.readFileSync(path.join(SQL_DIR, file)))
    .digest('hex');
}

const db = useTestDatabase();

describe('migrations', () => {
  it('a landed migration never changes: every file keeps the sha256 it landed with', () => {
    for (const [file, pinned] of Object.entries(PINNED)) {
      expect(fs.existsSync(path.join(SQL_DIR, file)), `sql/${file} was removed`).toBe(true);
      expect(
        sha256(file),
        `sql/${file} changed after it landed: a landed migration never changes: add a new one`,
      ).toBe(pinned);
    }
  });

  it('every migration file is pinned', () => {
    const unpinned = FILES.filter((f) => !(f in PINNED));
    const lines = unpinned.map((f) => `  '${f}': '${sha256(f)}',`).join('\n');
    expect(
      unpinned,
      `new migration(s): pin them in PINNED of test/core/migrations.test.ts:\n${lines}`,
    ).toEqual([]);
  });

  it('the migrator runs exactly the files of sql/ (the bundled copy is not stale)', () => {
    const bundled = loadMigrations().map((m) => ({
      file: `${String(m.id).padStart(4, '0')}_${m.name}.sql`,
      sql: m.sql,
    }));
    const onDisk = FILES.map((file) => ({
      file,
      sql: fs.readFileSync(path.join(SQL_DIR, file), 'utf8'),
    }));
    expect(
      bundled,
      'src/core/migrations.generated.ts differs from sql/: run npm run migrations:build',
    ).toEqual(onDisk);
  });

  it('docs/schema.sql is the schema of a freshly migrated database', async () => {
    const fresh = renderSchemaFile(await dumpSchema(db.url));
    const checkedIn = fs.readFileSync(SCHEMA_FILE, 'utf8');
    expect(checkedIn, 'docs/schema.sql is stale: run npm run schema:dump').toBe(fresh);
  });
});
