import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from './helpers/db.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const db = useTestDatabase();

/** The first ```ts block of a README section. */
function readmeExample(section: string): string {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const start = readme.indexOf(`<!-- section:${section} -->`);
  const end = readme.indexOf(`<!-- /section:${section} -->`);
  const body = readme.slice(start, end);
  const m = /```ts\n([\s\S]*?)```/.exec(body);
  if (start < 0 || !m) throw new Error(`no ts example in README section ${section}`);
  return m[1]!;
}

describe('README: change capture example', () => {
  it('runs as written against a real database', async () => {
    const code = readmeExample('change-capture').replace(
      "from 'pgcoord'",
      `from ${JSON.stringify(path.join(root, 'src/index.ts'))}`,
    );
    const dir = path.join(root, '.tmp');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `readme-change-capture-${process.pid}.ts`);
    fs.writeFileSync(file, code);
    try {
      const out = await new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', file],
          { cwd: root, env: { ...process.env, DATABASE_URL: db.url }, timeout: 30_000 },
          (err, stdout, stderr) =>
            err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        );
      });
      expect(out).toContain('total 42');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});
