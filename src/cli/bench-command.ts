import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { CliError, EXIT } from './exit-codes.js';

/** `pgcoord bench <scenario>`: runs a benchmark scenario of a checkout (bench/ is not published). */
export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'run benchmark scenarios (needs a checkout of pgcoord: bench/ is not in the npm package)',
    )
    .argument('[scenarios...]', 'scenario names (default: all)')
    .option('--quick', 'small sizes, under a minute per scenario')
    .addHelpText('after', '\nExample:\n  $ pgcoord bench http --quick')
    .action(async (scenarios: string[], o: { quick?: boolean }) => {
      const root = packageRoot();
      const runner = path.join(root, 'bench/run.ts');
      if (!fs.existsSync(runner)) {
        throw new CliError(
          'bench needs a checkout of pgcoord (bench/run.ts is not installed)',
          EXIT.UNSUPPORTED,
        );
      }
      const args = ['--import', 'tsx', runner, ...scenarios, ...(o.quick ? ['--quick'] : [])];
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
        child.on('error', reject);
        child.on('close', (c) => resolve(c ?? EXIT.FAILURE));
      });
      if (code !== 0) throw new CliError(`bench exited with ${code}`, code);
    });
}

function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}
