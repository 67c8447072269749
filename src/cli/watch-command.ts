import os from 'node:os';
import { Command } from 'commander';
import { ChangeCapture, type TableRef } from '../changes/index.js';
import { ChangeConsumer } from '../changes/index.js';
import { commandPool, chooseDatabase } from './database.js';
import { CliError, EXIT } from './exit-codes.js';
import type { GlobalOptions } from './options.js';
import { nextStopRequest, signalExitCode, type StopSignal } from './stop-requests.js';
import { out, printJson } from './output.js';

/** `pgcoord watch <table...>`: prints captured changes live, until Ctrl-C. */
export function watchCommand(): Command {
  return new Command('watch')
    .description('print captured changes of tables as they commit, until Ctrl-C (exit 130)')
    .argument('<tables...>', 'tables: name (schema public) or schema.name')
    .option('--track', 'start capturing the tables first (installs the capture trigger)')
    .option(
      '--group <name>',
      'consumer group to read as (default: a throw-away group, dropped on exit)',
    )
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord watch orders --track --json\n  {"id":"17","op":"INSERT","table":"orders","pk":{"id":1},...}',
    )
    .action(async (tables: string[], o: { track?: boolean; group?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
      const pool = commandPool(url, 4);
      const schemaOpt = g.schema ? { schema: g.schema } : {};
      const capture = new ChangeCapture(pool, schemaOpt);
      const refs = tables.map(toRef);
      const wanted = new Set(
        refs.map((r) => (typeof r === 'string' ? `public.${r}` : `${r.schema}.${r.name}`)),
      );
      const group = o.group ?? `pgcoord-watch-${os.hostname()}-${process.pid}`;
      let consumer: ChangeConsumer | undefined;
      const { stopped, dispose } = nextStopRequest();
      let signal: StopSignal;
      try {
        if (o.track) for (const r of refs) await capture.track(r);
        else await checkTracked(capture, wanted);
        consumer = new ChangeConsumer(pool, {
          ...schemaOpt,
          group,
          startFrom: 'now',
          pruneIntervalMs: 0,
          handler: async (changes) => {
            for (const c of changes) {
              if (!wanted.has(`${c.schema}.${c.table}`)) continue;
              if (g.json) printJson(c);
              else out(`${c.id}\t${c.op}\t${c.schema}.${c.table}\t${JSON.stringify(c.pk)}`);
            }
          },
        });
        consumer.on('error', (err) => process.stderr.write(`pgcoord: ${err.message}\n`));
        await consumer.start();
        process.stderr.write(`watching ${[...wanted].join(', ')} as group ${group}\n`);
        signal = await stopped;
      } finally {
        dispose();
        await consumer?.stop();
        if (!o.group) await capture.dropGroup(group).catch(() => undefined);
        await pool.end();
      }
      // Interrupted is how this command ends: 130 for Ctrl-C, 143 for SIGTERM, like `tail -f`.
      throw new CliError('', signalExitCode(signal));
    });
}

/**
 * Without --track, every table must already be captured: otherwise nothing would ever print
 * (a missing table or a capture never installed), and waiting forever hides the mistake.
 */
async function checkTracked(capture: ChangeCapture, wanted: Set<string>): Promise<void> {
  const tracked = new Set((await capture.tracked()).map((t) => `${t.schema}.${t.name}`));
  const missing = [...wanted].filter((name) => !tracked.has(name));
  if (missing.length > 0) {
    throw new CliError(
      `not tracked: ${missing.join(', ')} (no such table, or its capture is not installed: pass --track to install it)`,
      EXIT.NOT_FOUND,
    );
  }
}

function toRef(name: string): TableRef {
  const dot = name.indexOf('.');
  return dot > 0 ? { schema: name.slice(0, dot), name: name.slice(dot + 1) } : name;
}
