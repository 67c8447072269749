import { Command, Option } from 'commander';
import { RATE_LIMIT_ALGORITHMS } from '../coordination/index.js';
import { RateLimiter, type RateLimiterOptions } from '../coordination/index.js';
import { chooseDatabase, withPool } from './database.js';
import { CliError, EXIT } from './exit-codes.js';
import { parseCount, type GlobalOptions } from './options.js';
import { out, printJson } from './output.js';

/** `pgcoord limit <name> <key>`: one rate-limit decision; exit 0 allowed, 4 denied. */
export function limitCommand(): Command {
  return new Command('limit')
    .description('take units from a rate limiter key; exit 0 when allowed, 4 when denied')
    .argument('<name>', 'limiter name')
    .argument('<key>', 'who is limited')
    .requiredOption('--limit <n>', 'units per period', parseCount)
    .requiredOption('--period-ms <ms>', 'period in milliseconds', parseCount)
    .addOption(
      new Option('--algorithm <name>', 'algorithm')
        .choices([...RATE_LIMIT_ALGORITHMS])
        .default('fixed-window'),
    )
    .addOption(new Option('--burst <n>', 'burst (bucket algorithms, GCRA)').argParser(parseCount))
    .addOption(new Option('--cost <n>', 'units to take').default(1).argParser(parseCount))
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord limit api user:42 --limit 100 --period-ms 60000 && curl ...',
    )
    .action(
      async (
        name: string,
        key: string,
        o: { limit: number; periodMs: number; algorithm: string; burst?: number; cost: number },
        cmd: Command,
      ) => {
        const g = cmd.optsWithGlobals<GlobalOptions>();
        const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
        const options: RateLimiterOptions = {
          name,
          algorithm: o.algorithm as RateLimiterOptions['algorithm'],
          limit: o.limit,
          periodMs: o.periodMs,
          ...(o.burst === undefined ? {} : { burst: o.burst }),
          ...(g.schema ? { schema: g.schema } : {}),
        };
        const d = await withPool(url, (pool) =>
          new RateLimiter(pool, options).consume(key, { cost: o.cost }),
        );
        if (g.json) printJson(d);
        else
          out(
            `${d.allowed ? 'allowed' : 'denied'} remaining=${d.remaining} retryAfterMs=${d.retryAfterMs} resetAfterMs=${d.resetAfterMs}`,
          );
        if (!d.allowed) throw new CliError('', EXIT.CONFLICT);
      },
    );
}
