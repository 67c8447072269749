import { Command } from 'commander';
import { ClusterPool } from '../cluster/index.js';
import { chooseDatabase } from './database.js';
import type { GlobalOptions } from './options.js';
import { out, printJson } from './output.js';

/** `pgcoord topology`: what the cluster pool sees of the instances behind a (multi-host) URL. */
export function topologyCommand(): Command {
  return new Command('topology')
    .description(
      "the cluster pool's view: role, health, read-only flag and replay lag of every instance",
    )
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord topology --database-url "postgres://postgres@db1:5432,db2:5432/app"\n  db1:5432\tprimary\tup\tread-write\tlag -',
    )
    .action(async (_o: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
      const pool = new ClusterPool({
        connectionString: url ?? 'postgres://postgres@127.0.0.1:5432/postgres',
      });
      pool.on('error', () => undefined);
      try {
        const view = await pool.refresh();
        if (g.json) {
          printJson({ instances: view });
          return;
        }
        for (const i of view) {
          const lag = i.lagBytes === undefined ? '-' : `${i.lagBytes} B`;
          out(
            `${i.host}:${i.port}\t${i.role}\t${i.health}\t${i.readOnly ? 'read-only' : 'read-write'}\tlag ${lag}`,
          );
        }
      } finally {
        await pool.end();
      }
    });
}
