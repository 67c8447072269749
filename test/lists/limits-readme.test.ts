import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

describe('docs: keys and limits example', () => {
  it('runs as written and prints what its comments say', async () => {
    const { stdout } = await runReadmeExample('limits', db.url);
    expect(stdout.trim().split('\n')).toEqual([
      "[ 'https://a.example/1', 'https://b.example/1' ]",
      '0 true',
    ]);
  });
});
