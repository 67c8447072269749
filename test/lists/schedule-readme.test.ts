import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

describe('README: scheduling example', () => {
  it('runs as written and prints what its comments say', async () => {
    const { stdout } = await runReadmeExample('scheduling', db.url);
    expect(stdout.trim().split('\n')).toEqual([
      `[ 'password-reset:2', 'welcome:1', 'report:1', 'report:2' ]`,
      `{ total: 6, claimable: 0, leased: 4, delayed: 2, dead: 0 }`,
    ]);
  });
});
