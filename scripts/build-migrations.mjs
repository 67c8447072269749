#!/usr/bin/env node
// Bundles sql/NNNN_name.sql into src/core/migrations.generated.ts, so the migrator never looks
// for sql/ on disk: the migrations travel inside the build (tsx from source, dist/, an installed
// package alike). Run by `npm run build`; `--check` exits 1 when the checked-in file is stale.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sqlDir = path.join(root, 'sql');
const target = path.join(root, 'src', 'core', 'migrations.generated.ts');
const FILE_PATTERN = /^\d{4}_[a-z0-9_]+\.sql$/;

/** The generated module's source for the migrations now in sql/. */
export async function renderMigrationsModule() {
  const files = fs
    .readdirSync(sqlDir)
    .filter((f) => FILE_PATTERN.test(f))
    .sort();
  const entries = files.map((file) => {
    const sql = fs.readFileSync(path.join(sqlDir, file), 'utf8');
    return `  { file: ${JSON.stringify(file)}, sql: ${JSON.stringify(sql)} },`;
  });
  const source = [
    '// Generated from sql/*.sql by scripts/build-migrations.mjs (`npm run migrations:build`, run by',
    '// `npm run build`). Do not edit: add a migration file to sql/ and regenerate.',
    '',
    '/** The text of every migration file of sql/, in order. */',
    'export const MIGRATION_FILES: ReadonlyArray<{ readonly file: string; readonly sql: string }> = [',
    ...entries,
    '];',
    '',
  ].join('\n');
  const config = (await prettier.resolveConfig(target)) ?? {};
  return prettier.format(source, { ...config, filepath: target });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const next = await renderMigrationsModule();
  const current = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : '';
  if (process.argv.includes('--check')) {
    if (next !== current) {
      console.error(`${path.relative(root, target)} is stale: run npm run migrations:build`);
      process.exit(1);
    }
  } else if (next !== current) {
    fs.writeFileSync(target, next);
    console.error(`wrote ${path.relative(root, target)}`);
  }
}
