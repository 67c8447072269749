import pg from 'pg';
import { afterAll } from 'vitest';
import { waitFor } from './wait-for.js';

/**
 * Leak guard, loaded before every test file: records every node-postgres connection opened in
 * this worker and fails the file if any is still open once its own afterAll hooks have run.
 * A block that forgets to close a pool, a client or a listener is caught here.
 */
const open = new Set<pg.Client>();
const origConnect = pg.Client.prototype.connect;

pg.Client.prototype.connect = function patchedConnect(this: pg.Client, ...args: unknown[]) {
  open.add(this);
  this.once('end', () => open.delete(this));
  return (origConnect as (...a: unknown[]) => unknown).apply(this, args);
} as typeof pg.Client.prototype.connect;

// node-postgres deprecations (a query queued on a busy client, ...) stop working in pg 9: a
// block that triggers one fails its file here rather than break on upgrade.
const pgDeprecations: string[] = [];
process.on('warning', (w) => {
  if (w.name === 'DeprecationWarning' && /pg@9/.test(w.message)) pgDeprecations.push(w.message);
});

// Registered first, so it runs last (hooks unwind like a stack).
afterAll(async () => {
  if (pgDeprecations.length > 0) {
    const first = pgDeprecations[0];
    pgDeprecations.length = 0;
    throw new Error(`node-postgres deprecation during this file: ${first}`);
  }
  try {
    await waitFor(() => open.size === 0, { timeoutMs: 5_000, message: 'connections to close' });
  } catch {
    const names = [...open].map((c) => `${c.database ?? '?'}@${c.host}:${c.port}`);
    open.clear();
    throw new Error(
      `leak guard: ${names.length} PostgreSQL connection(s) left open: ${names.join(', ')}`,
    );
  }
});
