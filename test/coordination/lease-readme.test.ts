import { expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { readmeExample, runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

it('runs the lease example of the README as written: the fencing token refuses a late write', async () => {
  expect(readmeExample('leases')).toContain('new LeaseManager(pool');
  const { stdout, stderr } = await runReadmeExample('leases', db.url, { timeoutMs: 60_000 });
  expect(stderr).toBe('');
  expect(stdout).toBe('late write accepted: false\n');
  // The withLease holder (token 2) wrote last; the first holder's token 1 was refused.
  const { rows } = await db.pool.query('SELECT body, fence::int AS fence FROM report');
  expect(rows).toEqual([{ body: 'part 2', fence: 2 }]);
});
