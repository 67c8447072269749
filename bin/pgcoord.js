#!/usr/bin/env node
// The pgcoord command. An installed package runs the compiled dist/. In a checkout it runs the
// TypeScript sources through tsx, so a fresh clone needs no build step and never runs stale code;
// a dist/ built after the last source change (npm run build) is used instead, as it starts faster.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { URL, fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const built = join(root, 'dist/src/cli/main.js');
const source = join(root, 'src/cli/main.ts');

/** Newest modification time under a folder (ms). */
function newest(dir) {
  let max = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    max = Math.max(max, entry.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return max;
}

let entry = built;
if (
  existsSync(source) &&
  !(existsSync(built) && statSync(built).mtimeMs > newest(join(root, 'src')))
) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    entry = source;
  } catch {
    // No tsx (a production install of a checkout): fall back to the build.
  }
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv);
