import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** README.md and every page of docs/, relative to the repository root. */
export function docFiles(): string[] {
  const docs = fs
    .readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

/**
 * The first ```ts block between `<!-- section:NAME -->` and its closing marker. Section names are
 * unique across README.md and docs/*.md, so a test names only the section, wherever it lives.
 */
export function readmeExample(section: string): string {
  const found = docFiles().flatMap((file) => {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    const start = text.indexOf(`<!-- section:${section} -->`);
    return start < 0 ? [] : [{ file, text, start }];
  });
  if (found.length !== 1) {
    throw new Error(`section ${section} is in ${found.length} documents, not one`);
  }
  const { file, text, start } = found[0]!;
  const end = text.indexOf(`<!-- /section:${section} -->`);
  const m = /```ts\n([\s\S]*?)```/.exec(text.slice(start, end));
  if (end < 0 || !m) throw new Error(`no ts example in section ${section} of ${file}`);
  return m[1]!;
}

/** A ```ts block of a document: where it is, its innermost section, and its not-run reason. */
export interface DocExample {
  file: string;
  line: number;
  code: string;
  /** The innermost `<!-- section:NAME -->` around it, if any. */
  section: string | undefined;
  /** Whether it is the first ts block of that section (the one `readmeExample` returns). */
  firstInSection: boolean;
  /** The reason of a `<!-- not-run: reason -->` line right above the block. */
  notRun: string | undefined;
}

/** Every ```ts block of README.md and docs/*.md. */
export function docExamples(): DocExample[] {
  return docFiles().flatMap((file) => {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    const sections = [...text.matchAll(/<!-- section:([\w-]+) -->/g)].map((m) => ({
      name: m[1]!,
      start: m.index,
      end: text.indexOf(`<!-- /section:${m[1]} -->`, m.index),
    }));
    const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)];
    return blocks.map((m) => {
      const at = m.index;
      const around = sections.filter((s) => s.start < at && at < s.end);
      const inner = around.sort((a, b) => b.start - a.start)[0];
      const firstInSection =
        inner !== undefined && blocks.find((b) => b.index > inner.start)?.index === at;
      const before = text.slice(0, at).trimEnd().split('\n').at(-1) ?? '';
      const notRun = /^<!-- not-run: (.+) -->$/.exec(before)?.[1];
      return {
        file,
        line: text.slice(0, at).split('\n').length,
        code: m[1]!,
        section: inner?.name,
        firstInSection,
        notRun,
      };
    });
  });
}

/**
 * Runs the example of `section` as written, in its own Node process (tsx), with `DATABASE_URL`
 * set to `databaseUrl`. The example imports the published names `pgcoord`, `pgcoord/server` and
 * `pgcoord/cli`; it runs against this checkout's sources instead. Rejects (with its stderr) when
 * the example fails or runs longer than `timeoutMs` (default 30 s).
 */
export async function runReadmeExample(
  section: string,
  databaseUrl: string,
  options: { timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  const code = readmeExample(section).replace(
    /from 'pgcoord(\/server|\/cli)?'/g,
    (_, sub: string | undefined) =>
      `from ${JSON.stringify(path.join(root, 'src', sub ?? '', 'index.ts'))}`,
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
