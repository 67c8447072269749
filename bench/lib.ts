// Shared plumbing of the benchmark scenarios: a fresh database per scenario, timing, results.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createDatabase, databaseUrl, dropDatabase } from '../test/helpers/db.js';

export interface BenchResult {
  system: string;
  metric: string;
  value: number;
  /** Free-form: versions, settings, sizes. */
  note?: string;
}

export interface ScenarioContext {
  quick: boolean;
  /** Connection string of a fresh database made for this scenario (dropped after). */
  url: string;
  /** Creates a pool on the scenario database; closed by the runner afterwards. */
  pool(config?: pg.PoolConfig): pg.Pool;
  /** Makes another fresh database (dropped after), for systems that must not share tables. */
  freshDatabase(label: string): Promise<string>;
  log(message: string): void;
}

export interface Scenario {
  name: string;
  description: string;
  run(ctx: ScenarioContext): Promise<BenchResult[]>;
}

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The oldest Node the anchors run on: pg-boss 12 and graphile-worker 0.18 need 22.12. */
export const ANCHOR_MIN_NODE = [22, 12] as const;

/** Refuses, with the versions, a Node too old for the anchors (they run on this process's node). */
export function requireAnchorNode(version = process.versions.node): void {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  const [minMajor, minMinor] = ANCHOR_MIN_NODE;
  if (major > minMajor || (major === minMajor && minor >= minMinor)) return;
  throw new Error(
    `the pg-boss 12 and graphile-worker 0.18 anchors need Node >= ${minMajor}.${minMinor}; this is Node ${version}: run the benchmarks on Node 22 or 24`,
  );
}

export function packageVersion(name: string): string {
  const file = path.join(root, 'node_modules', name, 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

/**
 * Runs an anchor script (TypeScript, through tsx) on this process's node, in its own process, and
 * returns the JSON object it prints as its last stdout line. Its stderr is passed through.
 */
export function runAnchor<T>(script: string, args: string[], timeoutMs = 600_000): Promise<T> {
  requireAnchorNode();
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.resolve(root, script), ...args],
      {
        cwd: root,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0)
        return reject(new Error(`${script} exited with ${code}: ${out.slice(-2000)}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${script} printed no JSON result: ${out.slice(-2000)}`));
      }
    });
  });
}

/** The q-quantile (0..1) of a list of numbers (sorted copy, nearest rank). */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx]!;
}

/** Milliseconds since `start` (from performance.now()). */
export function since(start: number): number {
  return performance.now() - start;
}

export async function withScenarioDatabase<T>(
  label: string,
  fn: (ctx: { url: string; pools: pg.Pool[]; databases: string[] }) => Promise<T>,
): Promise<T> {
  const name = await createDatabase(`bench_${label}`);
  const pools: pg.Pool[] = [];
  const databases = [name];
  try {
    return await fn({ url: databaseUrl(name), pools, databases });
  } finally {
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
    for (const d of databases) await dropDatabase(d).catch(() => undefined);
  }
}

export function writeResults(scenario: string, quick: boolean, results: BenchResult[]): string {
  const dir = path.join(root, 'bench/results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${scenario}.json`);
  const body = { scenario, quick, date: new Date().toISOString(), results };
  fs.writeFileSync(file, JSON.stringify(body, null, 2) + '\n');
  return file;
}

/** A Markdown table of results, grouped by metric, with each row's ratio to pgcoord. */
export function formatTable(results: BenchResult[]): string {
  const lines = ['| metric | system | value | pgcoord / this | note |', '|---|---|---:|---:|---|'];
  const metrics = [...new Set(results.map((r) => r.metric))];
  for (const metric of metrics) {
    const rows = results.filter((r) => r.metric === metric);
    const ours = rows.find((r) => r.system === 'pgcoord' || r.system.startsWith('pgcoord'));
    for (const r of rows) {
      const ratio = ours && r.value !== 0 ? (ours.value / r.value).toFixed(2) + 'x' : '';
      lines.push(
        `| ${metric} | ${r.system} | ${formatNumber(r.value)} | ${ratio} | ${r.note ?? ''} |`,
      );
    }
  }
  return lines.join('\n');
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(2);
}
