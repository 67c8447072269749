// The README's first example, run for real: its two commands, read from the README so they
// cannot drift, fetch every URL of a local HTTP server with curl.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AttemptList } from '../../src/lists/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import { repoRoot, runCli, startCli } from '../support/cli.js';

const db = useTestDatabase();
const N = 40;
let server: http.Server;
let base: string;
const requests = new Map<string, number>();

beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests.set(req.url ?? '', (requests.get(req.url ?? '') ?? 0) + 1);
    const m = /^\/file-(\d+)\.txt$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`content of ${m[1]}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** The shell commands of the README's `quick-work` section, as argv after `pgcoord`. */
function readmeCommands(): string[][] {
  const text = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const start = text.indexOf('<!-- section:quick-work -->');
  const end = text.indexOf('<!-- /section:quick-work -->');
  const block = /```sh\n([\s\S]*?)```/.exec(text.slice(start, end));
  if (start < 0 || end < 0 || !block) throw new Error('no sh block in section quick-work');
  // The first example of the README (before any other code block).
  expect(text.indexOf('```')).toBe(start + text.slice(start).indexOf('```'));
  return block[1]!
    .trim()
    .split('\n')
    .map((line) => {
      const words = line.trim().split(/\s+/);
      expect(words[0]).toBe('pgcoord');
      return words.slice(1);
    });
}

it("runs the README's two commands: every URL fetched once, into the current folder", async () => {
  const [importArgs, workArgs] = readmeCommands();
  expect(importArgs).toEqual(['lists', 'import', 'urls', 'urls.txt']);
  expect(workArgs!.slice(0, 3)).toEqual(['lists', 'work', 'urls']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-readme-work-'));
  try {
    const urls = Array.from({ length: N }, (_, i) => `${base}/file-${i}.txt`);
    fs.writeFileSync(path.join(dir, 'urls.txt'), urls.join('\n') + '\n');
    const env = { ...process.env, DATABASE_URL: db.url };
    const imported = await runCli(importArgs!, { cwd: dir, env });
    expect(imported.stderr).toBe('');
    expect(imported.stdout).toMatch(new RegExp(`^imported ${N} items \\(${N} new\\)`));
    // Without --until-empty the worker waits for more items: stop it once the list is empty.
    const work = startCli(workArgs!, { cwd: dir, env });
    const list = new AttemptList(db.pool);
    await waitFor(async () => (await list.count('urls')) === 0, { timeoutMs: 30_000 });
    work.child.kill('SIGTERM');
    expect(await work.exited).toBe(143);
    expect(work.stderr()).toMatch(new RegExp(`${N} done, 0 failed`));
    expect([...requests.values()].every((n) => n === 1)).toBe(true);
    expect(requests.size).toBe(N);
    for (let i = 0; i < N; i++) {
      expect(fs.readFileSync(path.join(dir, `file-${i}.txt`), 'utf8')).toBe(`content of ${i}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
