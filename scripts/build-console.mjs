// Builds the console (console/) into dist/console/: one script and one stylesheet, minified,
// with a content hash in their names (served with a year of caching), and index.html naming
// them. Runs in `npm run build`, so the package ships it built: users run no build.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const src = path.join(root, 'console');
const out = path.join(root, 'dist', 'console');
// Built beside, then moved in place: test files that build at once never see half a folder.
const stage = `${out}.${process.pid}.tmp`;

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
fs.rmSync(out, { recursive: true, force: true });
try {
  fs.renameSync(stage, out);
} catch (err) {
  // Another build of the same sources got there first: its output is this one.
  fs.rmSync(stage, { recursive: true, force: true });
  if (!fs.existsSync(path.join(out, 'index.html'))) throw err;
}
console.log(`console built into ${path.relative(root, out)}: ${[js, css].join(', ')}`);
