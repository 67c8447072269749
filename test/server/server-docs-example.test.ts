// The "As a library" example of docs/cli-and-service.md, run as written: createServer() from
// pgcoord/server listens, answers with its URL and closes, and the process exits.
import { expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { readmeExample, runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

it('runs the createServer example of docs/cli-and-service.md as written', async () => {
  expect(readmeExample('server-library')).toContain("from 'pgcoord/server'");
  const { stdout, stderr } = await runReadmeExample('server-library', db.url, {
    timeoutMs: 60_000,
  });
  // The service logs pino lines on stderr: nothing at warn (40) or above.
  const levels = stderr
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { level: number }).level);
  expect(levels.filter((l) => l >= 40)).toEqual([]);
  expect(stdout).toMatch(/^http:\/\/127\.0\.0\.1:\d+\n$/);
});
