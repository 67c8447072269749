import { Command } from 'commander';
import { Listener } from '../listen/index.js';
import { notify } from '../listen/index.js';
import { chooseDatabase, withPool } from './database.js';
import { CliError } from './exit-codes.js';
import { nextStopRequest, signalExitCode, type StopSignal } from './stop-requests.js';
import type { GlobalOptions } from './options.js';
import { out, printJson } from './output.js';

/** `pgcoord listen <channel...>`: prints notifications as they come, like `tail -f`. */
export function listenCommand(): Command {
  return new Command('listen')
    .description(
      'print notifications of channels as they arrive until Ctrl-C (exit 130; reconnects by itself)',
    )
    .argument('<channels...>', 'channel names, used exactly (case kept)')
    .addHelpText(
      'after',
      '\nExample:\n  $ pgcoord listen jobs events --json\n  {"channel":"jobs","payload":"42","processId":1234}',
    )
    .action(async (channels: string[], _o: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
      const listener = new Listener({
        ...(url ? { connection: url } : {}),
        ...(g.schema ? { schema: g.schema } : {}),
        applicationName: 'pgcoord-cli-listen',
      });
      listener.on('error', (err) =>
        process.stderr.write(`pgcoord: ${err.message} (reconnecting)\n`),
      );
      for (const channel of channels) {
        listener.handle(channel, (payload, n) => {
          if (g.json) printJson({ channel: n.channel, payload, processId: n.processId });
          else out(channels.length > 1 ? `${n.channel}\t${payload}` : payload);
        });
      }
      const { stopped, dispose } = nextStopRequest();
      let signal: StopSignal;
      try {
        await listener.start();
        process.stderr.write(`listening on ${channels.join(', ')}\n`);
        signal = await stopped;
      } finally {
        dispose();
        await listener.stop();
      }
      // Interrupted is how this command ends: 130 for Ctrl-C, 143 for SIGTERM, like `tail -f`.
      throw new CliError('', signalExitCode(signal));
    });
}

/** `pgcoord notify <channel> <payload>`. */
export function notifyCommand(): Command {
  return new Command('notify')
    .description(
      'send a notification (payloads over 7999 bytes are stored and fetched by listeners)',
    )
    .argument('<channel>', 'channel name')
    .argument('[payload]', 'payload text', '')
    .addHelpText('after', '\nExample:\n  $ pgcoord notify jobs "job 42 is ready"')
    .action(async (channel: string, payload: string, _o: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
      await withPool(url, (pool) =>
        notify(pool, channel, payload, {
          largePayloads: true,
          ...(g.schema ? { schema: g.schema } : {}),
        }),
      );
      if (g.json) printJson({ sent: true });
    });
}
