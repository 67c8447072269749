import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { readmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('README: attempt lists', () => {
  it('the example runs as written and prints what its comments say', async () => {
    // Run it as a module of this package: `from 'pgcoord'` resolves to the source.
    const code = readmeExample('attempt-lists').replace(
      `from 'pgcoord'`,
      `from '../../src/index.js'`,
    );
    const file = path.join(root, 'test', 'lists', `.readme-attempt-lists-${process.pid}.ts`);
    fs.writeFileSync(file, code);
    const logs: unknown[][] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
      logs.push(args);
    });
    const saved = process.env.DATABASE_URL;
    process.env.DATABASE_URL = db.url;
    try {
      await import(/* @vite-ignore */ file);
    } finally {
      // Assigning undefined would store the string 'undefined'.
      if (saved === undefined) delete process.env.DATABASE_URL;
      else process.env.DATABASE_URL = saved;
      spy.mockRestore();
      fs.rmSync(file, { force: true });
    }
    expect(logs).toEqual([[1], [[{ item: 'https://a.example/2', attempts: 1 }]]]);
  });
});
