import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { useTestDatabase } from './helpers/db.js';

const db = useTestDatabase();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

it('runs the key-value example of the README as written', () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = readme.slice(
    readme.indexOf('<!-- section:kv -->'),
    readme.indexOf('<!-- /section:kv -->'),
  );
  const example = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(example).toContain('new KvStore(pool)');
  // The example imports the published name; run it against this checkout's sources instead.
  const code = example!.replace(
    "from 'pgcoord'",
    `from ${JSON.stringify(path.join(root, 'src/index.ts'))}`,
  );
  fs.mkdirSync(path.join(root, '.tmp'), { recursive: true }); // git-ignored
  const dir = fs.mkdtempSync(path.join(root, '.tmp', 'readme-'));
  try {
    const file = path.join(dir, 'kv-example.ts');
    fs.writeFileSync(file, code);
    const res = spawnSync(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: db.url },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
