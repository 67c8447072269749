// The examples of the README and docs/ are what users copy: each one that opens a pool ends it (or the process
// lingers until the idle connections time out), and no pool is left without an 'error' listener
// (an idle connection dropped by the server would end the process).
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { docExamples, readmeExample, runReadmeExample } from '../helpers/readme-example.js';

const db = useTestDatabase();
const examples = docExamples;

describe('README examples and their pools', () => {
  it('every example that opens a pool ends it and handles its errors', () => {
    const opening = examples().filter((e) =>
      /new pg\.Pool\(|createPool\(|new ClusterPool\(/.test(e.code),
    );
    expect(opening.length).toBeGreaterThan(5);
    const problems: string[] = [];
    for (const { file, line, code } of opening) {
      if (!/\bpool\.end\(\)/.test(code)) problems.push(`${file}:${line}: no pool.end()`);
      // createPool and ClusterPool attach their own 'error' listener; a bare pg.Pool needs one.
      if (/new pg\.Pool\(/.test(code) && !/\.on\('error'/.test(code)) {
        problems.push(`${file}:${line}: a pg.Pool without an 'error' listener`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('runs the first library example (migrate) as written', async () => {
    expect(readmeExample('library')).toContain('await migrate(pool)');
    const { stderr } = await runReadmeExample('library', db.url);
    expect(stderr).toBe('');
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM pgcoord.migrations`);
    expect(rows[0].n).toBeGreaterThan(0);
  });
});
