import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: process.env.PGCOORD_PATRONI ? ['test/cluster-patroni.test.ts'] : ['test/**/*.test.ts'],
    // The Patroni switchover test runs alone (`npm run test:patroni`): it starts etcd and three
    // Patroni members, and it has an open intermittent failure under load (issue 6).
    exclude: process.env.PGCOORD_PATRONI
      ? []
      : ['test/cluster-patroni.test.ts', '**/node_modules/**'],
    setupFiles: ['test/helpers/leak-guard.ts'],
    pool: 'forks',
    // Files are I/O bound against one PostgreSQL; more workers than cores keeps the server busy.
    maxWorkers: 4,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
