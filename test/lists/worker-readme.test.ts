import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

describe('README: workers example', () => {
  it('runs as written and prints what its comment says', async () => {
    const { stdout } = await runReadmeExample('workers', db.url);
    expect(stdout.trim()).toBe(`2 [ { item: 'broken.gif', attempts: 1 } ]`);
  });
});

describe('docs: worker tuning example', () => {
  it('runs as written and prints what its comment says', async () => {
    const { stdout } = await runReadmeExample('worker-tuning', db.url);
    expect(stdout.trim()).toBe('10000 0');
  });
});
