#!/usr/bin/env node
// The pgcoord command. In a checkout (src/ present and tsx installed) it runs the TypeScript
// sources through tsx, so a fresh clone needs no build step and never runs a stale dist/; an
// installed package runs the compiled dist/.
import { existsSync } from 'node:fs';
import { URL, fileURLToPath } from 'node:url';

const root = new URL('../', import.meta.url);
const source = new URL('src/cli/main.ts', root);
let entry = new URL('dist/src/cli/main.js', root);
if (existsSync(fileURLToPath(source))) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    entry = source;
  } catch {
    // No tsx (production install of a checkout): fall back to the build.
  }
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
