import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { runUnderStorm, type StormChild } from '../helpers/kill-storm.js';

// issue 12 item 3: a connection error must never escape as an uncaught exception, whatever
// block is running when the server cuts its connections. Each storm runs in a child process:
// a crash there would take vitest down with it here.
const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.join(here, '../fixtures/kill-storm-process.ts');

interface BlockSummary {
  ok: number;
  errors: number;
  afterStorm: number;
  recovered: boolean;
  foreign: string[];
}

function explain(run: StormChild): string {
  return `exit ${run.code} signal ${run.signal}; storm ${JSON.stringify(run.storm)}\n${run.stderr.slice(0, 4000)}\n${run.stdout.slice(-2000)}`;
}

/** The child exited 0 by itself, with a summary, no unhandled rejection, after a real storm. */
function expectSurvived(run: StormChild): Record<string, BlockSummary> {
  expect(run.code, explain(run)).toBe(0);
  expect(run.summary, explain(run)).toBeDefined();
  expect(run.summary!.unhandled, explain(run)).toEqual([]);
  expect(run.storm.killed, 'the storm terminated backends').toBeGreaterThan(0);
  return run.summary!.blocks as Record<string, BlockSummary>;
}

describe('kill storms', () => {
  it('withTransaction on a pool that opens a connection per checkout survives a storm', async () => {
    // The reproduction of the report: 8 loops, maxUses 1, backends terminated every 5-20 ms.
    const run = await runUnderStorm(script, [db.url, 'transactions', '8'], db.name, {
      rounds: 300,
      maxMs: 3_000,
    });
    const blocks = expectSurvived(run);
    expect(blocks.transactions!.errors, 'the storm hit the transactions').toBeGreaterThan(0);
    expect(blocks.transactions!.recovered).toBe(true);
  });

  it('every block survives a storm, reports errors as PgcoordErrors and recovers after it', async () => {
    const names = [
      'lists-claim',
      'lists-import',
      'lists-migrate',
      'kv',
      'rate-limiter',
      'lease',
      'leader-election',
      'listener',
      'notify',
      'change-consumer',
      'cluster-pool',
      'transactions',
      'transactions-pg-pool',
    ];
    const run = await runUnderStorm(script, [db.url, names.join(','), '2'], db.name, {
      rounds: 400,
      maxMs: 4_000,
    });
    const blocks = expectSurvived(run);
    const total = Object.values(blocks).reduce((n, b) => n + b.errors, 0);
    expect(total, 'the storm disrupted the blocks').toBeGreaterThan(0);
    for (const name of names) {
      const b = blocks[name];
      expect(b, name).toBeDefined();
      expect({ name, recovered: b!.recovered }).toEqual({ name, recovered: true });
      expect({ name, foreign: b!.foreign }).toEqual({ name, foreign: [] });
    }
  });
});
