import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the built console lives: `dist/console/` of the package. From the compiled server
 * (`dist/src/server/`) that is `../../console/`; from the sources (`src/server/`, tests and tsx)
 * it is `../../dist/console/` (built by `npm run build` or `npm run console:build`); the source
 * folder `console/` holds only the page's template (`page.html`), so it is never taken for it.
 */
const CANDIDATES = ['../../console/', '../../dist/console/'];

/** Strict: nothing from another origin, no inline script or style, no framing. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** One asset, read once at start (the whole console is tens of kilobytes). */
export interface ConsoleAsset {
  body: Buffer;
  type: string;
  /** Cache-Control: the page is revalidated, hashed files are kept for a year. */
  cacheControl: string;
}

/** The built console: `index.html` and the files under `/console/`; undefined when not built. */
export interface ConsoleAssets {
  index: ConsoleAsset;
  files: Map<string, ConsoleAsset>;
}

/** Reads the built console from the first candidate folder that has an index.html. */
export function loadConsoleAssets(): ConsoleAssets | undefined {
  for (const candidate of CANDIDATES) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    const indexPath = path.join(dir, 'index.html');
    if (!fs.existsSync(indexPath)) continue;
    const files = new Map<string, ConsoleAsset>();
    for (const name of fs.readdirSync(dir)) {
      const type = TYPES[path.extname(name)];
      if (!type || name === 'index.html') continue;
      // Built names carry a content hash (app-3FQ2K1.js): safe to keep for a year.
      const hashed = /-[A-Z0-9]{8}\.(js|css)$/.test(name);
      files.set(name, {
        body: fs.readFileSync(path.join(dir, name)),
        type,
        cacheControl: hashed ? 'public, max-age=31536000, immutable' : 'public, max-age=3600',
      });
    }
    return {
      index: { body: fs.readFileSync(indexPath), type: TYPES['.html']!, cacheControl: 'no-cache' },
      files,
    };
  }
  return undefined;
}
