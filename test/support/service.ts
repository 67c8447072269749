import { afterAll, beforeAll } from 'vitest';
import { createServer, type PgcoordServer } from '../../src/server/index.js';
import { useTestDatabase, type TestDatabase } from '../helpers/db.js';

export interface TestService {
  /** The calling file's own database (see `useTestDatabase`). */
  db: TestDatabase;
  /** The running service; set once the file's `beforeAll` hooks ran. */
  server: PgcoordServer;
  /** Base URL of the service (`http://127.0.0.1:<port>`); set once the `beforeAll` hooks ran. */
  base: string;
}

/**
 * Gives the calling test file its own database and the real HTTP service on it (free port, no
 * logs), started before its tests and closed after. `setup` runs on the database first (tables,
 * tracking) so the service starts on the state the file needs.
 */
export function useTestService(
  options: { setup?: (db: TestDatabase) => Promise<void> } = {},
): TestService {
  const service = { db: useTestDatabase() } as TestService;
  beforeAll(async () => {
    await options.setup?.(service.db);
    service.server = await createServer({ pool: service.db.pool, port: 0, logger: false });
    service.base = await service.server.listen();
  });
  afterAll(async () => {
    await service.server?.close();
  });
  return service;
}
