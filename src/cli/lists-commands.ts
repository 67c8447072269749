import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { Command, Option } from 'commander';
import { AttemptList, type ScheduleOptions } from '../lists/index.js';
import { chooseDatabase, withPool } from './database.js';
import { CliError, EXIT } from './exit-codes.js';
import { listsWorkCommand } from './lists-work-command.js';
import {
  parseCount,
  parseDate,
  parseInteger,
  parseWholeNumber,
  type GlobalOptions,
} from './options.js';
import { out, printJson } from './output.js';
import { limitsCommand } from './limits-commands.js';

function listsOf(pool: import('pg').Pool, g: GlobalOptions): AttemptList {
  return new AttemptList(pool, g.schema ? { schema: g.schema } : {});
}

/** Runs `fn` with an AttemptList on the command's database. */
async function withLists<T>(
  cmd: Command,
  fn: (lists: AttemptList, g: GlobalOptions) => Promise<T>,
): Promise<T> {
  const g = cmd.optsWithGlobals<GlobalOptions>();
  const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
  return withPool(url, (pool) => fn(listsOf(pool, g), g));
}

/**
 * Adds `<name> <list> <items...>`: runs a batch write and prints its count as `<word> N` (or
 * `{"<word>": N}` with --json). `example` is the help example after `pgcoord lists <name> downloads `.
 */
function batchCommand(
  lists: Command,
  name: string,
  description: string,
  example: string,
  word: string,
  write: (l: AttemptList, list: string, items: string[]) => Promise<number>,
): void {
  lists
    .command(`${name} <list> <items...>`)
    .description(description)
    .addHelpText('after', `\nExample:\n  $ pgcoord lists ${name} downloads ${example}`)
    .action(async (list: string, items: string[], _o: unknown, cmd: Command) => {
      const n = await withLists(cmd, (l) => write(l, list, items));
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ [word]: n });
      else out(`${word} ${n}`);
    });
}

/** `--run-at`, `--delay-ms`, `--priority` of an insert (checked by the list: exit 2 when out of range). */
function withScheduleOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--run-at <time>',
        'not claimable before this time (ISO 8601, e.g. 2030-01-01T09:00:00Z)',
      )
        .argParser(parseDate)
        .conflicts('delayMs'),
    )
    .addOption(
      new Option(
        '--delay-ms <ms>',
        'not claimable before this many ms from now (server clock)',
      ).argParser(parseWholeNumber),
    )
    .addOption(
      new Option(
        '--priority <n>',
        'claims take higher priorities first (-32768 to 32767; default 0)',
      ).argParser(parseInteger),
    );
}

/** The schedule options a command was given, as the list takes them. */
function scheduleOf(o: ScheduleOptions): ScheduleOptions {
  const s: ScheduleOptions = {};
  if (o.runAt !== undefined) s.runAt = o.runAt;
  if (o.delayMs !== undefined) s.delayMs = o.delayMs;
  if (o.priority !== undefined) s.priority = o.priority;
  return s;
}

/** `pgcoord lists ...`: attempt lists from the shell. */
export function listsCommand(): Command {
  const lists = new Command('lists').description(
    'attempt lists: add, read, page, increment, delete, import, claim, work, live workers',
  );

  withScheduleOptions(
    lists
      .command('add <list> <items...>')
      .description(
        'add items, optionally scheduled and with a priority (existing ones keep their attempts and schedule); prints how many were new',
      ),
  )
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord lists add downloads https://a.example/1 https://a.example/2\n  added 2\n  $ pgcoord lists add downloads https://a.example/3 --delay-ms 60000 --priority 5\n  added 1',
    )
    .action(async (list: string, items: string[], o: ScheduleOptions, cmd: Command) => {
      const n = await withLists(cmd, (l) => l.insertBatch(list, items, scheduleOf(o)));
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ added: n });
      else out(`added ${n}`);
    });

  lists
    .command('get <list> <item>')
    .description('attempts of one item; exit 3 when it does not exist')
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord lists get downloads https://a.example/1 --json\n  {"item":"https://a.example/1","attempts":0}',
    )
    .action(async (list: string, item: string, _o: unknown, cmd: Command) => {
      const attempts = await withLists(cmd, (l) => l.getOne(list, item));
      if (attempts === undefined)
        throw new CliError(
          `no item ${JSON.stringify(item)} in list ${JSON.stringify(list)}`,
          EXIT.NOT_FOUND,
        );
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ item, attempts });
      else out(String(attempts));
    });

  lists
    .command('page <list>')
    .description(
      'a keyset page: lines "item<TAB>attempts"; pass the last item as --after for the next',
    )
    .option('--after <item>', 'items strictly after this one', '')
    .addOption(new Option('--count <n>', 'entries to return').default(1000).argParser(parseCount))
    .addHelpText('after', '\nExample:\n  $ pgcoord lists page downloads --count 2 --after b')
    .action(async (list: string, o: { after: string; count: number }, cmd: Command) => {
      const entries = await withLists(cmd, (l) =>
        l.getBatch(list, { after: o.after, count: o.count }),
      );
      if (cmd.optsWithGlobals<GlobalOptions>().json)
        printJson({ entries, last: entries[entries.length - 1]?.item });
      else for (const e of entries) out(`${e.item}\t${e.attempts}`);
    });

  batchCommand(
    lists,
    'inc',
    'add one attempt to each item; prints how many existed',
    'https://a.example/1\n  incremented 1',
    'incremented',
    (l, list, items) => l.incrementBatch(list, items),
  );

  batchCommand(
    lists,
    'del',
    'delete items; prints how many existed',
    'https://a.example/1\n  deleted 1',
    'deleted',
    (l, list, items) => l.deleteBatch(list, items),
  );

  withScheduleOptions(
    lists
      .command('import <list> [file]')
      .description(
        'bulk import one item per line from a file or stdin (COPY; duplicates skipped; atomic); the schedule options apply to every new item',
      )
      .option(
        '--key-regex <re>',
        "each item's key: the first capture group of this PostgreSQL regular expression (default: the list's key rule)",
      )
      .option(
        '--key-separator <text>',
        'each line is KEY<text>ITEM (split at the first <text>, say a tab)',
      ),
  )
    .addHelpText(
      'after',
      "\nExample:\n  $ seq 1 1000000 | pgcoord lists import numbers\n  imported 1000000 items (1000000 new) in 3.1 s: 322,580 items/s\n  $ pgcoord lists import crawl urls.txt --key-regex '^https?://([^/]+)'",
    )
    .action(
      async (
        list: string,
        file: string | undefined,
        o: ScheduleOptions & { keyRegex?: string; keySeparator?: string },
        cmd: Command,
      ) => {
        const source = file === undefined || file === '-' ? process.stdin : openItemFile(file);
        const started = performance.now();
        const tty = process.stderr.isTTY === true;
        let lastDraw = 0;
        const result = await withLists(cmd, (l) =>
          l.import(list, source, {
            ...scheduleOf(o),
            ...(o.keyRegex !== undefined && { keyRegex: o.keyRegex }),
            ...(o.keySeparator !== undefined && {
              keySeparator: o.keySeparator === '\\t' ? '\t' : o.keySeparator,
            }),
            onProgress: (p) => {
              const now = performance.now();
              if (!tty || now - lastDraw < 100) return;
              lastDraw = now;
              const rate = p.read / ((now - started) / 1000);
              process.stderr.write(
                `\r${bar(p.read)} ${p.read.toLocaleString('en-US')} items, ${Math.round(rate).toLocaleString('en-US')}/s `,
              );
            },
          }),
        );
        if (tty) process.stderr.write('\r\x1b[K');
        const seconds = (performance.now() - started) / 1000;
        const rate = Math.round(result.read / Math.max(seconds, 1e-6));
        if (cmd.optsWithGlobals<GlobalOptions>().json) {
          printJson({
            read: result.read,
            inserted: result.inserted,
            seconds: Number(seconds.toFixed(3)),
            itemsPerSecond: rate,
          });
        } else {
          out(
            `imported ${result.read} items (${result.inserted} new) in ${seconds.toFixed(1)} s: ${rate.toLocaleString('en-US')} items/s`,
          );
        }
      },
    );

  lists
    .command('claim <list>')
    .description(
      'claim items for a lease; prints "item<TAB>token<TAB>attempts" (complete them through the library or HTTP)',
    )
    .addOption(new Option('--limit <n>', 'most items to claim').default(1).argParser(parseCount))
    .addOption(
      new Option('--lease-ms <ms>', 'lease length in milliseconds')
        .default(30_000)
        .argParser(parseCount),
    )
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord lists claim downloads --limit 10 --lease-ms 60000 --json',
    )
    .action(async (list: string, o: { limit: number; leaseMs: number }, cmd: Command) => {
      const claims = await withLists(cmd, (l) =>
        l.claim(list, { limit: o.limit, leaseMs: o.leaseMs }),
      );
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ claims });
      else for (const c of claims) out(`${c.item}\t${c.token}\t${c.attempts}`);
    });

  lists
    .command('stats [list]')
    .description('sizes: every list, or one')
    .addHelpText('after', '\nExample:\n  $ pgcoord lists stats\n  downloads\t1000000')
    .action(async (list: string | undefined, _o: unknown, cmd: Command) => {
      const rows = await withLists(cmd, async (l) =>
        list === undefined ? l.lists() : [{ list, size: await l.count(list) }],
      );
      if (cmd.optsWithGlobals<GlobalOptions>().json) printJson({ lists: rows });
      else for (const r of rows) out(`${r.list}\t${r.size}`);
    });

  lists.addCommand(listsWorkCommand());
  lists
    .command('workers [list]')
    .description(
      'live workers (of every list, or one): "id<TAB>list<TAB>host<TAB>pid<TAB>inFlight/concurrency<TAB>startedAt<TAB>heartbeatAt"',
    )
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord lists workers downloads\n  6f1c...\tdownloads\tbox-1\t4242\t3/10\t2026-01-05T10:00:00.000Z\t2026-01-05T10:20:15.000Z',
    )
    .action(async (list: string | undefined, _o: unknown, cmd: Command) => {
      const workers = await withLists(cmd, (l) => l.workers(list));
      if (cmd.optsWithGlobals<GlobalOptions>().json) {
        printJson({ workers });
        return;
      }
      for (const w of workers) {
        out(
          [
            w.id,
            w.list,
            w.host,
            w.pid,
            `${w.inFlight}/${w.concurrency}`,
            w.startedAt.toISOString(),
            w.heartbeatAt.toISOString(),
          ].join('\t'),
        );
      }
    });
  lists.addCommand(limitsCommand());

  return lists;
}

/**
 * Opens the file now, so a missing or unreadable one is a usage error before anything connects
 * (a read stream reports it later, as an 'error' event nobody listens to yet).
 */
function openItemFile(file: string): Readable {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    if (fs.fstatSync(fd).isDirectory()) throw new Error(`${file} is a folder`);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    throw new CliError(`cannot read the items: ${(err as Error).message}`, EXIT.USAGE);
  }
  const stream = fs.createReadStream(file, { fd });
  // A read error later (EIO) fails the import, which reads the stream; until then, keep it quiet.
  stream.on('error', () => undefined);
  return stream;
}

/** A spinner-like bar for an unknown total: moves as items arrive. */
function bar(read: number): string {
  const width = 20;
  const pos = Math.floor(read / 50_000) % width;
  return `[${' '.repeat(pos)}=${' '.repeat(width - pos - 1)}]`;
}
