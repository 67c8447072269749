import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: process.env.PGCOORD_PATRONI
      ? ['test/cluster/cluster-patroni.test.ts']
      : ['test/**/*.test.ts'],
    // The Patroni switchover test runs alone (`npm run test:patroni`, after `npm test` in CI): it
    // starts etcd and three Patroni members, too heavy to share the machine with the suite.
    exclude: process.env.PGCOORD_PATRONI
      ? []
      : ['test/cluster/cluster-patroni.test.ts', '**/node_modules/**'],
    // Finds or starts the PostgreSQL the suite runs on (an embedded one when none answers).
    globalSetup: ['test/helpers/global-setup.ts'],
    setupFiles: ['test/helpers/leak-guard.ts'],
    pool: 'forks',
    // Files are I/O bound against one PostgreSQL; more workers than cores keeps the server busy.
    maxWorkers: 4,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
