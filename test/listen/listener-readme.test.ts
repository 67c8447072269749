import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

describe('README: listener example', () => {
  it('runs as written against a real database', async () => {
    const { stdout } = await runReadmeExample('listener', db.url);
    expect(stdout).toContain('handled job 1');
    expect(stdout).toContain('woken by {"reason":"inserted"}');
    expect(stdout).toContain('readme_events hello');
  });
});
