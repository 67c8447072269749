// `pgcoord lists limits ...`: a list's key rule and limits from the shell, and the limit flags
// `pgcoord lists work` takes (limitFlags / limitsFromFlags).
import { Command, InvalidArgumentError, Option } from 'commander';
import { AttemptList, parseKeyRate, type ListLimits } from '../lists/index.js';
import { RATE_LIMIT_ALGORITHMS, type RateLimitAlgorithm } from '../coordination/index.js';
import { chooseDatabase, withPool } from './database.js';
import { parseCount, type GlobalOptions } from './options.js';
import { out, printJson } from './output.js';

/** The limit flags as commander parses them. */
export interface LimitFlags {
  perKeyConcurrency?: number;
  perKeyRate?: { limit: number; periodMs: number };
  rateAlgorithm?: RateLimitAlgorithm;
  listConcurrency?: number;
  keyRegex?: string;
}

function parseRate(value: string): { limit: number; periodMs: number } {
  try {
    return parseKeyRate(value, '--per-key-rate');
  } catch {
    throw new InvalidArgumentError('must be LIMIT/PERIOD_MS, say 10/1000 (10 per second).');
  }
}

/**
 * Adds the limit flags to `cmd`: --per-key-concurrency N, --per-key-rate LIMIT/PERIOD_MS,
 * --rate-algorithm NAME, --list-concurrency N, --key-regex RE. Read them back with
 * {@link limitsFromFlags}.
 */
export function limitFlags(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--per-key-concurrency <n>',
        'at most N items of one key leased at once, fleet-wide',
      ).argParser(parseCount),
    )
    .addOption(
      new Option(
        '--per-key-rate <limit/periodMs>',
        'at most LIMIT claims of one key per PERIOD_MS (server clock)',
      ).argParser(parseRate),
    )
    .addOption(
      new Option('--rate-algorithm <name>', 'algorithm of --per-key-rate (default gcra)').choices(
        RATE_LIMIT_ALGORITHMS,
      ),
    )
    .addOption(
      new Option(
        '--list-concurrency <n>',
        'at most N items of the list leased at once, fleet-wide',
      ).argParser(parseCount),
    )
    .addOption(
      new Option(
        '--key-regex <re>',
        "the key rule: a PostgreSQL regular expression; its first capture group is an item's key",
      ),
    );
}

/** The {@link ListLimits} the flags of {@link limitFlags} ask for (undefined: none given). */
export function limitsFromFlags(o: LimitFlags): ListLimits | undefined {
  const limits: ListLimits = {};
  if (o.keyRegex !== undefined) limits.keyRegex = o.keyRegex;
  if (o.perKeyConcurrency !== undefined || o.perKeyRate !== undefined) {
    limits.perKey = {};
    if (o.perKeyConcurrency !== undefined) limits.perKey.concurrency = o.perKeyConcurrency;
    if (o.perKeyRate !== undefined) {
      limits.perKey.rate = { ...o.perKeyRate };
      if (o.rateAlgorithm !== undefined) limits.perKey.rate.algorithm = o.rateAlgorithm;
    }
  }
  if (o.listConcurrency !== undefined) limits.concurrency = o.listConcurrency;
  return Object.keys(limits).length > 0 ? limits : undefined;
}

async function withLists<T>(cmd: Command, fn: (lists: AttemptList) => Promise<T>): Promise<T> {
  const g = cmd.optsWithGlobals<GlobalOptions>();
  const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
  return withPool(url, (pool) => fn(new AttemptList(pool, g.schema ? { schema: g.schema } : {})));
}

function print(cmd: Command, list: string, limits: object): void {
  if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ list, limits });
  else out(`${list}\t${JSON.stringify(limits)}`);
}

/** `pgcoord lists limits show|set|clear <list>`. */
export function limitsCommand(): Command {
  const limits = new Command('limits').description(
    "a list's key rule and limits (per-key concurrency and rate, list-wide concurrency)",
  );
  limits
    .command('show <list>')
    .description("print a list's key rule and limits ({} when none)")
    .action(async (list: string, _o: unknown, cmd: Command) => {
      print(cmd, list, await withLists(cmd, (l) => l.limits(list)));
    });
  limitFlags(
    limits
      .command('set <list>')
      .description(
        "store a list's key rule and limits, replacing what it had; every claim obeys them",
      ),
  )
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord lists limits set crawl --key-regex \'^https?://([^/]+)\' --per-key-concurrency 2 --per-key-rate 10/1000\n  crawl\t{"keyRegex":"^https?://([^/]+)","perKey":{"concurrency":2,"rate":{"limit":10,"periodMs":1000,"algorithm":"gcra","burst":1}}}',
    )
    .action(async (list: string, o: LimitFlags, cmd: Command) => {
      const stored = await withLists(cmd, async (l) => {
        await l.setLimits(list, limitsFromFlags(o) ?? {});
        return l.limits(list);
      });
      print(cmd, list, stored);
    });
  limits
    .command('clear <list>')
    .description("remove a list's key rule and limits (its items keep their keys)")
    .action(async (list: string, _o: unknown, cmd: Command) => {
      await withLists(cmd, (l) => l.clearLimits(list));
      print(cmd, list, {});
    });
  return limits;
}
