import { Command, CommanderError, Option } from 'commander';
import { migrate } from '../core/index.js';
import { PgcoordError } from '../core/index.js';
import { chooseDatabase, withPool } from './database.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { benchCommand } from './bench-command.js';
import { kvCommand } from './kv-commands.js';
import { limitCommand } from './limit-command.js';
import { listsCommand } from './lists-commands.js';
import { listenCommand, notifyCommand } from './notify-commands.js';
import { loadServe } from './optional-dependency.js';
import { parseCount, parsePort, type GlobalOptions } from './options.js';
import { out } from './output.js';
import { packageVersion } from './package-version.js';
import { topologyCommand } from './topology-command.js';
import { watchCommand } from './watch-command.js';

/** Builds the `pgcoord` program. Exposed for tests and for embedding in another CLI. */
export function buildProgram(): Command {
  const program = new Command('pgcoord')
    .description('Coordinate processes through PostgreSQL: the pgcoord command line.')
    .addOption(
      new Option(
        '--database-url <url>',
        'PostgreSQL connection string (default: DATABASE_URL, then the URL of a running `pgcoord serve` in --data-dir, then postgres://postgres@127.0.0.1:5432/postgres)',
      ),
    )
    .addOption(
      new Option('--data-dir <dir>', 'folder of the embedded PostgreSQL')
        .default('.pgcoord')
        .env('PGCOORD_DATA_DIR'),
    )
    .addOption(
      new Option('--schema <name>', 'schema of the pgcoord tables (default pgcoord)').env(
        'PGCOORD_SCHEMA',
      ),
    )
    .version(packageVersion(), '-V, --version', 'print the version of pgcoord')
    .option('--json', 'print results as JSON (read commands)')
    .option('--verbose', 'print stack traces of errors')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 failure, 2 usage or invalid input (nothing written), 3 not found,
4 conflict (CAS mismatch, stale token, limit denied, data folder owned by a running serve),
5 database unavailable, 6 timeout, 7 unsupported, 130 interrupted (SIGINT: Ctrl-C),
143 terminated (SIGTERM). serve exits 0 once a signal has stopped it cleanly.

Example:
  $ npx pgcoord serve          # HTTP on 127.0.0.1:8080, embedded PostgreSQL in ./.pgcoord
  $ npx pgcoord migrate --database-url postgres://postgres@127.0.0.1:5432/app`,
    );

  program
    .command('serve')
    .description(
      'run the HTTP service; with no DATABASE_URL, on an embedded PostgreSQL in --data-dir',
    )
    .addOption(
      new Option('--host <address>', 'address to bind; another than loopback needs PGCOORD_TOKEN')
        .env('PGCOORD_HOST')
        .default('127.0.0.1'),
    )
    .addOption(
      new Option('--port <port>', 'TCP port (0 = any free port)')
        .env('PGCOORD_PORT')
        .default('8080')
        .argParser(parsePort),
    )
    .addOption(
      new Option('--pool-max <n>', 'connections of the service pool')
        .default('20')
        .argParser(parseCount),
    )
    .option(
      '--read-only',
      'serve the console and the read API; refuse every write with 403 (env PGCOORD_READ_ONLY=1)',
    )
    .addHelpText(
      'after',
      `
Example:
  $ npx pgcoord serve
  pgcoord serving http://127.0.0.1:8080 (console at http://127.0.0.1:8080/, OpenAPI at http://127.0.0.1:8080/openapi.json)
  DATABASE_URL=postgres://postgres:...@127.0.0.1:41789/postgres
  $ PGCOORD_TOKEN=$(openssl rand -hex 24) npx pgcoord serve --host 0.0.0.0`,
    )
    .action(
      async (
        opts: {
          host: string;
          port: number | string;
          poolMax: number | string;
          readOnly?: boolean;
        },
        cmd: Command,
      ) => {
        const g = cmd.optsWithGlobals<GlobalOptions>();
        // Loaded on demand: Fastify is most of the startup time of the other commands, and it
        // is an optional peer dependency (a missing one is named, with the command to add it).
        const serve = await loadServe(!(g.databaseUrl || process.env.DATABASE_URL));
        await serve({
          host: opts.host,
          port: typeof opts.port === 'string' ? parsePort(opts.port) : opts.port,
          poolMax: typeof opts.poolMax === 'string' ? parseCount(opts.poolMax) : opts.poolMax,
          ...(opts.readOnly ? { readOnly: true } : {}),
          databaseUrl: g.databaseUrl,
          dataDir: g.dataDir,
          schema: g.schema,
        });
      },
    );

  program
    .command('migrate')
    .description('bring the pgcoord schema up to date (safe to run from many processes)')
    .addHelpText(
      'after',
      '\nExample:\n  $ DATABASE_URL=postgres://postgres@db:5432/app npx pgcoord migrate --json',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
      const result = await withPool(url, (pool) =>
        migrate(pool, g.schema ? { schema: g.schema } : {}),
      );
      if (g.json) out(JSON.stringify(result));
      else
        out(
          result.applied.length === 0
            ? `schema already at version ${result.version}`
            : `applied ${result.applied.join(', ')}; now at version ${result.version}`,
        );
    });

  program.addCommand(listsCommand());
  program.addCommand(kvCommand());
  program.addCommand(limitCommand());
  program.addCommand(listenCommand());
  program.addCommand(notifyCommand());
  program.addCommand(watchCommand());
  program.addCommand(topologyCommand());
  program.addCommand(benchCommand());
  return program;
}

/**
 * Runs the command line; resolves with the exit code (never throws, never calls process.exit).
 * Errors print as one line on stderr; `--verbose` adds the stack.
 */
export async function main(argv: string[]): Promise<number> {
  // `pgcoord ... | head` closes our stdout early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.OK);
  });
  const program = buildProgram();
  program.exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const override = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.configureOutput({ writeErr: (str) => process.stderr.write(str) });
    cmd.commands.forEach(override);
  };
  override(program);
  try {
    await program.parseAsync(argv);
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for (--help, `help <command>`) or --version: 0. Help shown because a command
      // group got no subcommand (`pgcoord lists`) has a non-zero exitCode: a usage error.
      const asked =
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        (err.code === 'commander.help' && err.exitCode === 0);
      return asked ? EXIT.OK : EXIT.USAGE;
    }
    const verbose = argv.includes('--verbose');
    const message = describeError(err);
    // An empty message is an outcome already printed (a denied limit): only the exit code speaks.
    if (message) process.stderr.write(`pgcoord: ${message}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    return exitCodeFor(err);
  }
}

function describeError(err: unknown): string {
  if (err instanceof PgcoordError) return `${err.message} [${err.code}]`.replaceAll('\n', ' ');
  if (err instanceof Error) return err.message.split('\n')[0] ?? 'error';
  return String(err);
}
