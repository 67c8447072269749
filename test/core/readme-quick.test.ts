// The README's one example per block, run as written, each in its own process, and checked
// against what its comments promise.
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();

describe('README: one example per block', () => {
  it('attempt lists', async () => {
    const { stdout, stderr } = await runReadmeExample('quick-lists', db.url);
    expect(stderr).toBe('');
    expect(stdout).toBe('working on a.txt b.txt\nworking on c.txt\nleft 0\n');
  });

  it('key-value, rate limits and leases', async () => {
    const { stdout, stderr } = await runReadmeExample('quick-coordination', db.url);
    expect(stderr).toBe('');
    expect(stdout).toBe(
      'swapped true\nallowed true\nallowed true\nallowed false\nfencing token 1n\n',
    );
  });

  it('listener', async () => {
    const { stdout, stderr } = await runReadmeExample('quick-listener', db.url);
    expect(stderr).toBe('');
    expect(stdout).toBe('jobs {"id":1}\n');
  });

  it('change capture', async () => {
    const { stdout, stderr } = await runReadmeExample('quick-changes', db.url, {
      timeoutMs: 60_000,
    });
    expect(stderr).toBe('');
    expect(stdout).toBe('INSERT notes {"id":1,"body":"hi"}\n');
  });

  it('cluster pool', async () => {
    const { stdout, stderr } = await runReadmeExample('quick-cluster', db.url);
    expect(stderr).toBe('');
    expect(stdout).toBe('instances primary\n');
  });
});
