import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The first ```ts block between `<!-- section:NAME -->` and its closing marker in README.md. */
export function readmeExample(section: string): string {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const start = readme.indexOf(`<!-- section:${section} -->`);
  const end = readme.indexOf(`<!-- /section:${section} -->`);
  const m = /```ts\n([\s\S]*?)```/.exec(readme.slice(start, end));
  if (start < 0 || !m) throw new Error(`no ts example in README section ${section}`);
  return m[1]!;
}

/**
 * Runs the README example of `section` as written, in its own Node process (tsx), with
 * `DATABASE_URL` set to `databaseUrl`. The example imports the published name `pgcoord`; it runs
 * against this checkout's sources instead. Rejects (with its stderr) when the example fails or
 * runs longer than `timeoutMs` (default 30 s).
 */
export async function runReadmeExample(
  section: string,
  databaseUrl: string,
  options: { timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  const code = readmeExample(section).replace(
    "from 'pgcoord'",
    `from ${JSON.stringify(path.join(root, 'src/index.ts'))}`,
  );
  fs.mkdirSync(path.join(root, '.tmp'), { recursive: true }); // git-ignored
  const dir = fs.mkdtempSync(path.join(root, '.tmp', 'readme-'));
  try {
    const file = path.join(dir, `${section}-example.ts`);
    fs.writeFileSync(file, code);
    return await new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', file],
        {
          cwd: root,
          env: { ...process.env, DATABASE_URL: databaseUrl },
          timeout: options.timeoutMs ?? 30_000,
        },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve({ stdout, stderr }),
      );
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
