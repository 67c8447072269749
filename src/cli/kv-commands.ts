import { Command, Option } from 'commander';
import { KvStore } from '../coordination/index.js';
import { chooseDatabase, withPool } from './database.js';
import { CliError, EXIT } from './exit-codes.js';
import { parseCount, type GlobalOptions } from './options.js';
import { out, printJson } from './output.js';

async function withKv<T>(cmd: Command, fn: (kv: KvStore) => Promise<T>): Promise<T> {
  const g = cmd.optsWithGlobals<GlobalOptions>();
  const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
  return withPool(url, (pool) => fn(new KvStore(pool, g.schema ? { schema: g.schema } : {})));
}

const ttl = () =>
  new Option('--ttl-ms <ms>', 'expire after this many milliseconds (server clock)').argParser(
    parseCount,
  );

/** `pgcoord kv ...`: the TTL key-value store from the shell. */
export function kvCommand(): Command {
  const kv = new Command('kv').description('key-value store with TTL and compare-and-set');

  kv.command('get <key>')
    .description('print the live value; exit 3 when missing or expired')
    .addHelpText('after', '\nExample:\n  $ pgcoord kv get config/mode\n  maintenance')
    .action(async (key: string, _o: unknown, cmd: Command) => {
      const value = await withKv(cmd, (s) => s.get(key));
      if (value === undefined)
        throw new CliError(`no live key ${JSON.stringify(key)}`, EXIT.NOT_FOUND);
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ key, value });
      else out(value);
    });

  kv.command('set <key> <value>')
    .description('write a value (optionally expiring)')
    .addOption(ttl())
    .addHelpText('after', '\nExample:\n  $ pgcoord kv set config/mode maintenance --ttl-ms 600000')
    .action(async (key: string, value: string, o: { ttlMs?: number }, cmd: Command) => {
      await withKv(cmd, (s) => s.set(key, value, o.ttlMs === undefined ? {} : { ttlMs: o.ttlMs }));
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ key, written: true });
    });

  kv.command('del <key>')
    .description('delete a key; prints whether a live one was there')
    .addHelpText('after', '\nExample:\n  $ pgcoord kv del config/mode\n  deleted')
    .action(async (key: string, _o: unknown, cmd: Command) => {
      const deleted = await withKv(cmd, (s) => s.delete(key));
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ deleted });
      else out(deleted ? 'deleted' : 'absent');
    });

  kv.command('cas <key> <expected> <next>')
    .description(
      'set <key> to <next> only if its live value is <expected> (--absent: only if missing); exit 4 on mismatch',
    )
    .option(
      '--absent',
      'expect the key to be missing or expired (then <expected> is ignored; pass "")',
    )
    .addOption(ttl())
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord kv cas counter 41 42 || echo "lost the race"\n  $ pgcoord kv cas lock "" me --absent --ttl-ms 30000',
    )
    .action(
      async (
        key: string,
        expected: string,
        next: string,
        o: { absent?: boolean; ttlMs?: number },
        cmd: Command,
      ) => {
        const ok = await withKv(cmd, (s) =>
          s.checkAndSet(
            key,
            o.absent ? undefined : expected,
            next,
            o.ttlMs === undefined ? {} : { ttlMs: o.ttlMs },
          ),
        );
        if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ key, swapped: ok });
        if (!ok)
          throw new CliError(
            `compare-and-set on ${JSON.stringify(key)} lost: the value is not the expected one`,
            EXIT.CONFLICT,
          );
      },
    );

  return kv;
}
