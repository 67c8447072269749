// npm run bench -- [scenario ...] [--quick]
// Runs pgcoord and its reference systems in one run on one database; prints a table and writes
// bench/results/<scenario>.json.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createDatabase, databaseUrl } from '../test/helpers/db.js';
import { formatTable, root, withScenarioDatabase, writeResults, type Scenario } from './lib.js';

async function loadScenarios(): Promise<Scenario[]> {
  const dir = path.join(root, 'bench/scenarios');
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .sort();
  const out: Scenario[] = [];
  for (const f of files) {
    const mod = (await import(path.join(dir, f))) as { default: Scenario };
    out.push(mod.default);
  }
  return out;
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const wanted = args.filter((a) => !a.startsWith('--'));
const scenarios = await loadScenarios();
const unknown = wanted.filter((w) => !scenarios.some((s) => s.name === w));
if (unknown.length > 0) {
  console.error(
    `unknown scenario(s): ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}`,
  );
  process.exit(2);
}
const selected = wanted.length > 0 ? scenarios.filter((s) => wanted.includes(s.name)) : scenarios;
let failed = 0;
for (const scenario of selected) {
  console.log(`\n## ${scenario.name}${quick ? ' (quick)' : ''}: ${scenario.description}\n`);
  try {
    const results = await withScenarioDatabase(scenario.name, async ({ url, pools, databases }) =>
      scenario.run({
        quick,
        url,
        pool(config = {}) {
          const p = new pg.Pool({ connectionString: url, max: 10, ...config });
          p.on('error', () => undefined);
          pools.push(p);
          return p;
        },
        async freshDatabase(label: string) {
          const name = await createDatabase(`bench_${label}`);
          databases.push(name);
          return databaseUrl(name);
        },
        log: (m) => console.log(`  ${m}`),
      }),
    );
    console.log(formatTable(results));
    console.log(`\nwrote ${path.relative(root, writeResults(scenario.name, quick, results))}`);
  } catch (err) {
    failed++;
    console.error(`scenario ${scenario.name} failed:`, err);
  }
}
process.exit(failed > 0 ? 1 : 0);
