// `pgcoord lists work <list> -- <command> {}`: a distributed xargs. Every process running it on
// the same list, on any machine, shares the list's items through claims.
import fs from 'node:fs';
import os from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  AttemptList,
  ATTEMPT_LIST_LIMITS,
  DEFAULT_WORKER_LEASE_MS,
  DEFAULT_WORKER_POLL_INTERVAL_MS,
  DEFAULT_WORKER_RETRY_DELAY_MS,
  MAX_WORKER_CONCURRENCY,
  type ClaimRef,
  type WorkItem,
  type WorkHandler,
  type Worker,
} from '../lists/index.js';
import { chooseDatabase, commandPool } from './database.js';
import { CliError, EXIT } from './exit-codes.js';
import {
  CommandFailedError,
  resolveCommand,
  startItemCommand,
  type CommandTemplate,
  type ItemRun,
} from './item-command.js';
import { limitFlags, limitsFromFlags, type LimitFlags } from './limits-commands.js';
import type { GlobalOptions } from './options.js';
import { onStopRequest, signalExitCode, type StopSignal } from './stop-requests.js';
import { logToFiles, prefixLines, ProgressLine, shortDuration } from './work-output.js';

/** Longest timer Node keeps (a longer setTimeout fires at once): the cap of --timeout-ms. */
const MAX_TIMER_MS = 2_147_483_647;
/** How often the progress line's remaining-items estimate reads the list's counts, ms. */
const STATS_INTERVAL_MS = 2_000;

/** Options of `lists work`, parsed. */
interface WorkCommandOptions extends LimitFlags {
  concurrency: number;
  leaseMs: number;
  maxAttempts?: number;
  retryDelayMs: number;
  timeoutMs?: number;
  pollIntervalMs: number;
  untilEmpty?: boolean;
  logDir?: string;
  progress: 'auto' | 'always' | 'never';
}

/** A whole-number option within [min, max], named in the error. */
function wholeNumber(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        `must be a whole number from ${min.toLocaleString('en-US')} to ${max.toLocaleString('en-US')}.`,
      );
    }
    return n;
  };
}

/** `pgcoord lists work`. */
export function listsWorkCommand(): Command {
  return limitFlags(
    new Command('work')
      .description(
        'run a command once per item ({} in its arguments is the item, else it is on stdin); processes on any machine share the list',
      )
      .argument('<list>', 'the list to work')
      .argument('<command...>', 'the command and its arguments, after --')
      .addOption(
        new Option('--concurrency <n>', 'commands running at once')
          .default(os.availableParallelism(), 'CPU count')
          .argParser(wholeNumber(1, MAX_WORKER_CONCURRENCY)),
      )
      .addOption(
        new Option('--lease-ms <ms>', 'lease of a claimed item, renewed while its command runs')
          .default(DEFAULT_WORKER_LEASE_MS)
          .argParser(wholeNumber(30, ATTEMPT_LIST_LIMITS.maxLeaseMs)),
      )
      .addOption(
        new Option(
          '--max-attempts <n>',
          'an item failing this many times is dead (default: no limit)',
        ).argParser(wholeNumber(1, ATTEMPT_LIST_LIMITS.maxAttempts)),
      )
      .addOption(
        new Option('--retry-delay-ms <ms>', 'base of the exponential backoff after a failure')
          .default(DEFAULT_WORKER_RETRY_DELAY_MS)
          .argParser(wholeNumber(0, ATTEMPT_LIST_LIMITS.maxLeaseMs)),
      )
      .addOption(
        new Option(
          '--timeout-ms <ms>',
          'kill a command (its whole process group) running longer, and fail its item (default: no limit)',
        ).argParser(wholeNumber(1, MAX_TIMER_MS)),
      )
      .addOption(
        new Option('--poll-interval-ms <ms>', 'idle wait between claims when no insert wakes us')
          .default(DEFAULT_WORKER_POLL_INTERVAL_MS)
          .argParser(wholeNumber(1, MAX_TIMER_MS)),
      )
      .option(
        '--until-empty',
        'exit once no item is claimable, in flight or waiting for a retry, across all workers (else wait for new items)',
      )
      .option('--log-dir <dir>', "write each item's output to <dir>/<item>.out and .err")
      .addOption(
        new Option('--progress <when>', 'live progress line on stderr')
          .choices(['auto', 'always', 'never'])
          .default('auto', 'auto: when stderr is a terminal'),
      ),
  )
    .addHelpText(
      'after',
      `
Each finished run prints "[item] " before each line of its output (or goes to --log-dir);
--json prints one JSON line per finished run on stdout (command output then goes to stderr).
Exit codes: 0 done (--until-empty: every item completed), 1 --until-empty ended with dead items
in the list, 2 bad options or a command that cannot run (nothing claimed), 130/143 stopped by
SIGINT/SIGTERM (in-flight commands finish, a second signal kills them and releases their items).

The limit flags (--per-key-concurrency, --per-key-rate, --list-concurrency, --key-regex) are
stored on the list before anything is claimed and hold for every worker of it (see lists limits).

Example:
  $ pgcoord lists import urls urls.txt
  $ pgcoord lists work urls --concurrency 16 -- curl -fsSO {}
  $ pgcoord lists work urls --key-regex '^https?://([^/]+)' --per-key-concurrency 2 -- curl -fsSO {}`,
    )
    .action(async (list: string, command: string[], o: WorkCommandOptions, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const template = resolveCommand(command);
      if (o.logDir !== undefined) {
        try {
          fs.mkdirSync(o.logDir, { recursive: true });
        } catch (err) {
          throw new CliError(`--log-dir: ${(err as Error).message}`, EXIT.USAGE);
        }
      }
      const { url } = chooseDatabase(g.databaseUrl, g.dataDir);
      const pool = commandPool(url, 6);
      try {
        const code = await workList(pool, list, template, o, g, url);
        if (code !== EXIT.OK) throw new CliError('', code);
      } finally {
        await pool.end().catch(() => undefined);
      }
    });
}

/** Runs the worker until the list is drained (--until-empty) or a signal; returns the exit code. */
async function workList(
  pool: import('pg').Pool,
  name: string,
  template: CommandTemplate,
  o: WorkCommandOptions,
  g: GlobalOptions,
  url: string | undefined,
): Promise<number> {
  const lists = new AttemptList(pool, g.schema ? { schema: g.schema } : {});
  // Connects, migrates and checks the list name before anything is claimed (a bad name, an
  // unreachable database: the usual exit codes).
  await lists.hasWork(name);

  const started = performance.now();
  const counts = { done: 0, failed: 0, dead: 0, lost: 0 };
  const running = new Map<string, { work: WorkItem; run: ItemRun; startedAt: number }>();
  // Completions the worker may not have sent yet when a second signal forces the exit.
  const recent: ClaimRef[] = [];
  let forced = false;
  const remaining = {
    value: undefined as number | undefined,
    first: undefined as RateSample | undefined,
    last: undefined as RateSample | undefined,
  };

  const progress = new ProgressLine(
    () => progressText(counts, running.size, started, remaining),
    o.progress === 'always' || (o.progress === 'auto' && process.stderr.isTTY === true),
  );
  const toStdout = !g.json;
  const streamOf = (which: 'out' | 'err') =>
    which === 'out' && toStdout ? process.stdout : process.stderr;
  const output = (which: 'out' | 'err') => (text: string) => progress.write(streamOf(which), text);
  // One 'drain' listener per stream, however many runs wait on it.
  const draining = new Map<NodeJS.WriteStream, Promise<void>>();
  const drained = (which: 'out' | 'err') => () => {
    const stream = streamOf(which);
    let wait = draining.get(stream);
    if (!wait) {
      wait = new Promise<void>((resolve) =>
        stream.once('drain', () => {
          draining.delete(stream);
          resolve();
        }),
      );
      draining.set(stream, wait);
    }
    return wait;
  };

  const handler: WorkHandler = async (work, { signal }) => {
    let outputs: Promise<unknown> = Promise.resolve();
    const run = startItemCommand(template, work.item, (stdout, stderr) => {
      outputs =
        o.logDir !== undefined
          ? logToFiles(o.logDir, work.item, stdout, stderr)
          : Promise.all([
              prefixLines(stdout, work.item, output('out'), drained('out')),
              prefixLines(stderr, work.item, output('err'), drained('err')),
            ]);
    });
    running.set(work.item, { work, run, startedAt: performance.now() });
    // Lease lost, --timeout-ms passed, or the stop deadline: the whole group goes.
    const kill = () => run.kill();
    signal.addEventListener('abort', kill, { once: true });
    try {
      const outcome = await run.ended;
      await outputs;
      // Forced exit: the item is released, not failed nor completed (see force()).
      if (forced) await new Promise(() => undefined);
      if (outcome.exitCode !== 0) throw new CommandFailedError(outcome);
      recent.push({ item: work.item, token: work.token });
      if (recent.length > 2 * o.concurrency) recent.shift();
    } finally {
      signal.removeEventListener('abort', kill);
    }
  };

  const worker = lists.work(name, handler, {
    concurrency: o.concurrency,
    leaseMs: o.leaseMs,
    maxAttempts: o.maxAttempts,
    retryDelayMs: o.retryDelayMs,
    timeoutMs: o.timeoutMs,
    pollIntervalMs: o.pollIntervalMs,
    limits: limitsFromFlags(o),
    // In-flight commands finish on a graceful stop; a second signal is the way to cut it short.
    stopTimeoutMs: MAX_TIMER_MS,
    connection: url ?? {},
  });
  worker.on('error', (err) => output('err')(`pgcoord: ${err.message}\n`));
  const finish = (status: string, w: WorkItem & { error?: unknown }) => {
    const r = running.get(w.item);
    running.delete(w.item);
    if (!g.json) return;
    const error = w.error;
    const failed = error instanceof CommandFailedError ? error.outcome : undefined;
    const line = {
      item: w.item,
      status,
      attempts: w.attempts + (status === 'failed' || status === 'dead' ? 1 : 0),
      ...(failed ? { exitCode: failed.exitCode, signal: failed.signal } : {}),
      ...(error !== undefined && !failed
        ? { error: (error as Error).message ?? String(error) }
        : {}),
      durationMs: r ? Math.round(performance.now() - r.startedAt) : undefined,
    };
    progress.write(process.stdout, JSON.stringify(line) + '\n');
  };
  worker.on('item:complete', (w) => {
    counts.done++;
    finish('done', w);
  });
  worker.on('item:fail', (w) => {
    counts.failed++;
    finish('failed', w);
  });
  worker.on('item:dead', (w) => {
    counts.dead++;
    finish('dead', w);
  });
  worker.on('lease:lost', (w) => {
    counts.lost++;
    finish('lost', w);
  });

  let stop!: (why: 'drained' | StopSignal) => void;
  const ended = new Promise<'drained' | StopSignal>((resolve) => (stop = resolve));
  let first: StopSignal | undefined;
  const dispose = onStopRequest((signal) => {
    if (first === undefined) {
      first = signal;
      const n = worker.metrics().inFlight;
      output('err')(
        `stopping: claiming nothing more, waiting for ${n} running ${n === 1 ? 'command' : 'commands'} (${signal} again kills them and releases their items)\n`,
      );
      stop(signal);
      return;
    }
    void force(signal);
  });

  async function force(signal: StopSignal): Promise<void> {
    forced = true;
    const held = [...running.values()];
    for (const r of held) r.run.kill();
    await lists
      .release(
        name,
        held.map((r) => ({ item: r.work.item, token: r.work.token })),
      )
      .catch(() => undefined);
    if (recent.length > 0) await lists.complete(name, recent).catch(() => undefined);
    progress.stop();
    process.stderr.write(
      `${summary(name, counts, started, worker)}; forced: ${held.length} running ${held.length === 1 ? 'command' : 'commands'} killed and released\n`,
    );
    process.exit(signalExitCode(signal));
  }

  // --until-empty: once this worker is idle, ask the list whether anything is left anywhere.
  let idle = false;
  let checking = false;
  const checkDrained = async () => {
    if (!o.untilEmpty || checking || !idle || worker.metrics().inFlight > 0) return;
    checking = true;
    try {
      if (idle && !(await lists.hasWork(name))) stop('drained');
    } catch (err) {
      output('err')(`pgcoord: ${(err as Error).message}\n`);
    } finally {
      checking = false;
    }
  };
  worker.on('idle', () => {
    idle = true;
    void checkDrained();
  });
  worker.on('item:start', () => (idle = false));
  const drainTimer = setInterval(() => void checkDrained(), o.pollIntervalMs);
  drainTimer.unref();
  // The ETA counts the list (O(its size)): only while a progress line shows it.
  let statsTimer: ReturnType<typeof setInterval> | undefined;
  if (progress.enabled) {
    void sampleRemaining(lists, name, remaining);
    statsTimer = setInterval(() => void sampleRemaining(lists, name, remaining), STATS_INTERVAL_MS);
    statsTimer.unref();
  }
  progress.start();

  let why: 'drained' | StopSignal;
  try {
    why = await ended;
    await worker.stop();
  } finally {
    clearInterval(drainTimer);
    clearInterval(statsTimer);
    dispose();
    progress.stop();
  }
  let text = summary(name, counts, started, worker);
  let code: number = EXIT.OK;
  if (why === 'drained') {
    const dead = (await lists.stats(name)).dead;
    text +=
      dead > 0
        ? `; the list is drained but holds ${dead} dead ${dead === 1 ? 'item' : 'items'}`
        : '; the list is drained';
    if (dead > 0) code = EXIT.FAILURE;
  } else {
    text += `; stopped by ${why}`;
    code = signalExitCode(why);
  }
  process.stderr.write(text + '\n');
  return code;
}

interface RateSample {
  at: number;
  remaining: number;
}

/** Reads how many items are left (claimable, leased, delayed) for the progress line's ETA. */
async function sampleRemaining(
  lists: AttemptList,
  name: string,
  into: { value: number | undefined; first: RateSample | undefined; last: RateSample | undefined },
): Promise<void> {
  try {
    const s = await lists.stats(name);
    const sample = { at: performance.now(), remaining: s.claimable + s.leased + s.delayed };
    into.value = sample.remaining;
    into.first ??= sample;
    into.last = sample;
  } catch {
    // The ETA waits for the next sample.
  }
}

function progressText(
  counts: { done: number; failed: number; dead: number },
  inFlight: number,
  started: number,
  remaining: {
    value: number | undefined;
    first: RateSample | undefined;
    last: RateSample | undefined;
  },
): string {
  const seconds = (performance.now() - started) / 1000;
  const rate = (counts.done + counts.dead) / Math.max(seconds, 1e-3);
  let eta = '?';
  const { first, last, value } = remaining;
  if (value !== undefined) {
    // The list's own drain rate counts every worker on every machine; ours is the fallback.
    const listRate =
      first && last && last.at > first.at
        ? ((first.remaining - last.remaining) * 1000) / (last.at - first.at)
        : 0;
    const r = listRate > 0 ? listRate : rate;
    eta = value === 0 ? '0s' : r > 0 ? shortDuration(value / r) : '?';
  }
  return `done ${counts.done}  failed ${counts.failed}  dead ${counts.dead}  in flight ${inFlight}  ${rate.toFixed(1)}/s  ETA ${eta}`;
}

function summary(
  name: string,
  counts: { done: number; failed: number; dead: number; lost: number },
  started: number,
  worker: Worker,
): string {
  const seconds = (performance.now() - started) / 1000;
  const m = worker.metrics();
  const rate = (counts.done + counts.dead) / Math.max(seconds, 1e-3);
  return (
    `lists work ${name}: ${counts.done} done, ${counts.failed} failed (retried later), ` +
    `${counts.dead} dead, ${counts.lost} lease lost, ${m.released} released in ` +
    `${seconds.toFixed(1)} s (${rate.toFixed(1)} items/s)`
  );
}
