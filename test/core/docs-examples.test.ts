// Every ```ts example of README.md and docs/*.md is run by some test, or says why it is not: a
// `<!-- not-run: reason -->` line right above it (type-only or fragment snippets, kept few).
// Tests run an example through readmeExample(section) / runReadmeExample(section), which take
// the first ts block of a section, so a runnable example must be the first block of its section.
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { docExamples } from '../helpers/readme-example.js';
import { repoRoot } from '../support/cli.js';

function testFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'helpers' ? [] : testFiles(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** Sections some test file runs, by name. */
function sectionsRun(): Set<string> {
  const names = new Set<string>();
  for (const file of testFiles(path.join(repoRoot, 'test'))) {
    const source = fs.readFileSync(file, 'utf8');
    for (const m of source.matchAll(/\b(?:readmeExample|runReadmeExample)\(\s*'([\w-]+)'/g)) {
      names.add(m[1]!);
    }
  }
  return names;
}

it('runs every ts example of the README and docs/, or says why not', () => {
  const run = sectionsRun();
  const examples = docExamples();
  expect(examples.length).toBeGreaterThan(10);
  const problems: string[] = [];
  for (const e of examples) {
    const at = `${e.file}:${e.line}`;
    if (e.notRun !== undefined) {
      if (e.notRun.trim().length < 10) problems.push(`${at}: not-run without a reason`);
    } else if (e.section === undefined) {
      problems.push(`${at}: outside any <!-- section:NAME --> and not marked not-run`);
    } else if (!e.firstInSection) {
      problems.push(`${at}: not the first ts block of section ${e.section}, so no test runs it`);
    } else if (!run.has(e.section)) {
      problems.push(`${at}: no test runs section ${e.section}`);
    }
  }
  expect(problems).toEqual([]);
  // The README keeps one short example per block, each run.
  const readme = examples.filter((e) => e.file === 'README.md' && e.notRun === undefined);
  expect(readme.map((e) => e.section)).toEqual([
    'library',
    'quick-lists',
    'quick-coordination',
    'quick-listener',
    'quick-changes',
    'quick-cluster',
  ]);
});

it('links only to files that exist', () => {
  const missing: string[] = [];
  for (const file of [
    'README.md',
    ...fs.readdirSync(path.join(repoRoot, 'docs')).map((f) => `docs/${f}`),
  ]) {
    if (!file.endsWith('.md')) continue;
    const text = fs.readFileSync(path.join(repoRoot, file), 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      if (!fs.existsSync(path.resolve(repoRoot, path.dirname(file), target))) {
        missing.push(`${file}: ${target}`);
      }
    }
    if (text.includes('REFERENCE.md')) missing.push(`${file}: REFERENCE.md`);
  }
  expect(missing).toEqual([]);
});
