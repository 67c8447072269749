import { expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { readmeExample, runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

it('runs the key-value example of the README as written', async () => {
  expect(readmeExample('kv')).toContain('new KvStore(pool)');
  const { stderr } = await runReadmeExample('kv', db.url, { timeoutMs: 60_000 });
  expect(stderr).toBe('');
});
