// Builds the console (console/) into dist/console/: one script and one stylesheet, minified,
// with a content hash in their names (served with a year of caching), and index.html naming
// them. Runs in `npm run build`, so the package ships it built: users run no build.
import { build, version as esbuildVersion } from 'esbuild';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const src = path.join(root, 'console');
const out = path.join(root, 'dist', 'console');
// Built beside, then moved in place: test files that build at once never see half a folder.
const stage = `${out}.${process.pid}.tmp`;

/** A digest of everything the build reads (esbuild's version included). */
function sourceDigest() {
  const hash = createHash('sha256');
  const walk = (dir) => {
    for (const entry of fs
      .readdirSync(dir, { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else hash.update(path.relative(root, p)).update(fs.readFileSync(p));
    }
  };
  walk(src);
  hash.update(fs.readFileSync(fileURLToPath(import.meta.url)));
  hash.update(fs.readFileSync(path.join(root, 'src/server/console-types.ts')));
  hash.update(JSON.stringify(esbuildVersion));
  return hash.digest('hex');
}

const digest = sourceDigest();
const digestFile = path.join(out, '.source-digest');
// --if-changed (the tests): nothing to do when the build is of these very sources.
if (
  process.argv.includes('--if-changed') &&
  fs.existsSync(digestFile) &&
  fs.readFileSync(digestFile, 'utf8') === digest
) {
  process.exit(0);
}

fs.rmSync(stage, { recursive: true, force: true });
const result = await build({
  entryPoints: { app: path.join(src, 'src', 'main.tsx') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome111', 'firefox111', 'safari16.4'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  entryNames: '[name]-[hash]',
  outdir: stage,
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css)
  throw new Error(`console build: expected a .js and a .css, got ${outputs.join(', ')}`);
const html = fs
  .readFileSync(path.join(src, 'page.html'), 'utf8')
  .replace('{{js}}', js)
  .replace('{{css}}', css);
fs.writeFileSync(path.join(stage, 'index.html'), html);
fs.copyFileSync(path.join(src, 'favicon.svg'), path.join(stage, 'favicon.svg'));
fs.writeFileSync(path.join(stage, '.source-digest'), digest);
// Swapped in with renames: a reader sees the old folder or the new one, never half of one.
const trash = `${out}.${process.pid}.old`;
try {
  fs.renameSync(out, trash);
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
}
try {
  fs.renameSync(stage, out);
} catch (err) {
  // Another build got there first (the tests build from several files at once): same sources.
  fs.rmSync(stage, { recursive: true, force: true });
  if (!fs.existsSync(path.join(out, 'index.html'))) throw err;
}
fs.rmSync(trash, { recursive: true, force: true });
console.log(`console built into ${path.relative(root, out)}: ${[js, css].join(', ')}`);
