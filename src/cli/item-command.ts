// One run of `pgcoord lists work`'s command for one item: finding the program, substituting the
// item, spawning it in its own process group, and killing that group when asked.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { CliError, EXIT } from './exit-codes.js';

/** What an item's command is made from, resolved once before anything is claimed. */
export interface CommandTemplate {
  /** Absolute path of the program. */
  file: string;
  /** The program as the user wrote it (the child's argv[0]). */
  name: string;
  /** Arguments, with `{}` where the item goes. */
  args: string[];
  /** Whether some argument holds `{}`; if none does, the item goes to stdin. */
  substitutes: boolean;
}

/** Marks where the item goes in an argument (every occurrence is replaced). */
export const ITEM_PLACEHOLDER = '{}';

/**
 * Resolves `command` like a shell would (a name containing `/` is a path; else the first match
 * on PATH) and checks it can be run, so a typo fails with exit 2 before any item is claimed.
 */
export function resolveCommand(command: string[], env = process.env): CommandTemplate {
  const [name, ...args] = command;
  if (name === undefined || name === '') {
    throw new CliError('no command given: put it after --, e.g. -- curl -fsSO {}', EXIT.USAGE);
  }
  const candidates = name.includes('/')
    ? [path.resolve(name)]
    : (env.PATH ?? '')
        .split(path.delimiter)
        .filter((dir) => dir !== '')
        .map((dir) => path.resolve(dir, name));
  for (const file of candidates) {
    if (isExecutableFile(file)) {
      return {
        file,
        name,
        args,
        substitutes: args.some((a) => a.includes(ITEM_PLACEHOLDER)),
      };
    }
  }
  throw new CliError(
    name.includes('/')
      ? `command ${JSON.stringify(name)} is not an executable file`
      : `command ${JSON.stringify(name)} not found on PATH`,
    EXIT.USAGE,
  );
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** How one run ended. */
export interface RunOutcome {
  /** The exit code, when the program exited. */
  exitCode: number | null;
  /** The signal that ended it, when one did. */
  signal: NodeJS.Signals | null;
}

/** A running item command. */
export interface ItemRun {
  /** Resolves when the program has exited and its output pipes are closed. */
  ended: Promise<RunOutcome>;
  /** SIGKILLs the whole process group (the program and whatever it started). Idempotent. */
  kill(): void;
}

/**
 * Starts the command for `item`: `{}` in any argument becomes the item (one argv element each,
 * no shell); with no `{}` the item and a newline are written to stdin, which is then closed. The
 * program leads its own process group (`detached`), so {@link ItemRun.kill} reaches its children.
 * `onOutput` gets its stdout and stderr streams.
 */
export function startItemCommand(
  template: CommandTemplate,
  item: string,
  onOutput: (stdout: Readable, stderr: Readable) => void,
): ItemRun {
  const args = template.substitutes
    ? template.args.map((a) => a.replaceAll(ITEM_PLACEHOLDER, item))
    : template.args;
  const child = spawn(template.file, args, {
    argv0: template.name,
    detached: true,
    stdio: [template.substitutes ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  let exited = false;
  const ended = new Promise<RunOutcome>((resolve, reject) => {
    child.once('error', (err) => {
      exited = true;
      reject(err);
    });
    // 'close': the program exited and its stdout/stderr are drained (a child that inherited
    // them may keep them open; kill() closes them by ending the group).
    child.once('close', (exitCode, signal) => {
      exited = true;
      resolve({ exitCode, signal });
    });
  });
  if (child.stdin) {
    // A program that never reads stdin may exit before we write: EPIPE is not its failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(item + '\n');
  }
  onOutput(child.stdout!, child.stderr!);
  return {
    ended,
    kill() {
      if (exited || child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group is gone already.
      }
    },
  };
}

/** The failure of a run that did not exit 0, as the worker records it. */
export class CommandFailedError extends Error {
  constructor(readonly outcome: RunOutcome) {
    super(
      outcome.signal
        ? `command killed by ${outcome.signal}`
        : `command exited with code ${outcome.exitCode}`,
    );
    this.name = 'CommandFailedError';
  }
}
