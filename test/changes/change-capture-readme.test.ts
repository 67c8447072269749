import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

describe('README: change capture example', () => {
  it('runs as written against a real database', async () => {
    const { stdout } = await runReadmeExample('change-capture', db.url);
    expect(stdout).toContain('total 42');
  });
});
