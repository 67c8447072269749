// `pgcoord lists work`: the real command, spawned as a process, running real commands against a
// real database.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { logFileStem } from '../../src/cli/work-output.js';
import { AttemptList } from '../../src/lists/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';
import { isRunning, runCli, startCli } from '../support/cli.js';

const db = useTestDatabase();
const lists = () => new AttemptList(db.pool);
const run = (args: string[], options: { input?: string | Buffer; cwd?: string } = {}) =>
  runCli(['--database-url', db.url, ...args], options);
const start = (args: string[]) => startCli(['--database-url', db.url, ...args]);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-work-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A fresh folder for one test's effects. */
function folder(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  return dir;
}

/** Every item of a list with its attempts and whether it is leased. */
async function rows(list: string) {
  const { rows } = await db.pool.query<{ item: string; attempts: number; leased: boolean }>(
    `SELECT item, attempts, token IS NOT NULL AS leased FROM pgcoord.list_items
      WHERE list = $1 ORDER BY item`,
    [list],
  );
  return rows;
}

const fast = ['--until-empty', '--poll-interval-ms', '50'];

describe('pgcoord lists work', () => {
  it('replaces every {} in every argument with the item, as one argv element each', async () => {
    const dir = folder('subst');
    const items = ['a', 'b c', "it's $HOME", '../x'];
    await lists().insertBatch('subst', items);
    // $1 = the item, $2 = --url=<item>: no shell between us and the program.
    const script = 'printf "%s|%s\\n" "$1" "$2" >> "$0/out"';
    const r = await run([
      'lists',
      'work',
      'subst',
      ...fast,
      '--',
      'sh',
      '-c',
      script,
      dir,
      '{}',
      '--url={}/{}',
    ]);
    expect(r.stderr).toMatch(/4 done, 0 failed .* the list is drained/);
    expect(r.code).toBe(0);
    const lines = fs.readFileSync(path.join(dir, 'out'), 'utf8').trim().split('\n').sort();
    expect(lines).toEqual(items.map((i) => `${i}|--url=${i}/${i}`).sort());
    expect(await lists().count('subst')).toBe(0);
  });

  it('writes the item and a newline to stdin when no argument holds {}', async () => {
    const dir = folder('stdin');
    await lists().insertBatch('stdin', ['one', 'two words', 'thr\u00e9e']);
    const r = await run([
      'lists',
      'work',
      'stdin',
      ...fast,
      '--concurrency',
      '1',
      '--',
      'sh',
      '-c',
      `cat >> ${dir}/in`,
    ]);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'in'), 'utf8').split('\n').sort()).toEqual(
      ['', 'one', 'two words', 'thr\u00e9e'].sort(),
    );
  });

  it('prefixes each line of output with its item; --json prints one line per finished run', async () => {
    await lists().insertBatch('json', ['ok', 'bad']);
    const r = await run([
      '--json',
      'lists',
      'work',
      'json',
      ...fast,
      '--max-attempts',
      '2',
      '--retry-delay-ms',
      '1',
      '--',
      'sh',
      '-c',
      'echo "out $0"; printf "no newline $0" >&2; [ "$0" = ok ] || exit 7',
      '{}',
    ]);
    // Some item ended dead: exit 1, said in the summary.
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/1 done, 1 failed \(retried later\), 1 dead.*holds 1 dead item/);
    const json = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(json.map((j) => [j.item, j.status, j.attempts, j.exitCode])).toEqual(
      expect.arrayContaining([
        ['ok', 'done', 0, undefined],
        ['bad', 'failed', 1, 7],
        ['bad', 'dead', 2, 7],
      ]),
    );
    expect(json).toHaveLength(3);
    // With --json, stdout holds only JSON: the commands' output goes to stderr, prefixed.
    expect(r.stderr).toContain('[ok] out ok\n');
    expect(r.stderr).toContain('[ok] no newline ok\n');
    expect(r.stderr).toContain('[bad] out bad\n');
    expect(await rows('json')).toEqual([{ item: 'bad', attempts: 2, leased: false }]);

    await lists().insertBatch('plain', ['p']);
    const plain = await run(['lists', 'work', 'plain', ...fast, '--', 'echo', 'hi', '{}']);
    expect(plain.stdout).toBe('[p] hi p\n');
  });

  it('--until-empty waits for a failed item to be retried, and for items leased elsewhere', async () => {
    const dir = folder('retry');
    await lists().insertBatch('retry', ['flaky']);
    const held = await lists().claim('retry', { limit: 1, leaseMs: 60_000 });
    await lists().insertBatch('retry', ['steady']);
    // Fails on its first run, succeeds on the second.
    const script = `if [ -e ${dir}/$0 ]; then exit 0; fi; touch ${dir}/$0; exit 1`;
    const proc = start([
      '--json',
      'lists',
      'work',
      'retry',
      ...fast,
      '--retry-delay-ms',
      '200',
      '--',
      'sh',
      '-c',
      script,
      '{}',
    ]);
    // 'steady' failed then completed; 'flaky' is still held by another worker: keep waiting.
    await waitFor(() => proc.stdout().includes('"item":"steady","status":"done"'));
    expect(proc.stdout()).toContain('"item":"steady","status":"failed"');
    expect(isRunning(proc.child.pid!)).toBe(true);
    await lists().release('retry', held);
    expect(await proc.exited).toBe(0);
    expect(proc.stdout()).toContain('"item":"flaky","status":"done"');
    expect(await lists().count('retry')).toBe(0);
  });

  it('without --until-empty waits for new items; SIGTERM then exits 143', async () => {
    const dir = folder('wait');
    const proc = start(['lists', 'work', 'wait', '--', 'sh', '-c', `touch ${dir}/$0`, '{}']);
    await lists().insertBatch('wait', ['late']);
    // Woken by the insert's notification (or the poll).
    await waitFor(() => fs.existsSync(path.join(dir, 'late')));
    await waitFor(async () => (await lists().count('wait')) === 0);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(143);
    expect(proc.stderr()).toMatch(/1 done.*stopped by SIGTERM/);
  });

  it('--timeout-ms kills the whole process group of a command and fails its item', async () => {
    const dir = folder('timeout');
    await lists().insertBatch('timeout', ['slow']);
    // The command starts a grandchild and waits for it: both must die.
    const script = `sleep 1000 & echo $! > ${dir}/pid; wait`;
    const r = await run([
      '--json',
      'lists',
      'work',
      'timeout',
      ...fast,
      '--timeout-ms',
      '300',
      '--max-attempts',
      '1',
      '--',
      'sh',
      '-c',
      script,
      '{}',
    ]);
    expect(r.code).toBe(1);
    const line = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ item: 'slow', status: 'dead', attempts: 1 });
    expect(String(line.error)).toMatch(/ran over 300 ms/);
    const pid = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
    await waitFor(() => !isRunning(pid), { message: 'the grandchild sleep was killed' });
  });

  it('--log-dir writes each item to its own files, inside the folder whatever the item', async () => {
    const dir = folder('logs');
    const logs = path.join(dir, 'logs');
    const items = ['../../etc/x', '.', '..', 'a/b', '.hidden', 'x'.repeat(300), '%2E', 'é'];
    await lists().insertBatch('logs', items);
    const r = await run([
      'lists',
      'work',
      'logs',
      ...fast,
      '--log-dir',
      logs,
      '--',
      'sh',
      '-c',
      'echo "out:$0"; echo "err:$0" >&2',
      '{}',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    // Nothing outside the log folder; one .out and one .err per item, no subfolders.
    expect(fs.readdirSync(dir)).toEqual(['logs']);
    const files = fs.readdirSync(logs);
    expect(files).toHaveLength(items.length * 2);
    for (const f of files) expect(fs.statSync(path.join(logs, f)).isFile()).toBe(true);
    const outs = files
      .filter((f) => f.endsWith('.out'))
      .map((f) => fs.readFileSync(path.join(logs, f), 'utf8'));
    expect(outs.sort()).toEqual(items.map((i) => `out:${i}\n`).sort());
    const errs = files
      .filter((f) => f.endsWith('.err'))
      .map((f) => fs.readFileSync(path.join(logs, f), 'utf8'));
    expect(errs.sort()).toEqual(items.map((i) => `err:${i}\n`).sort());
  });

  it('SIGTERM lets in-flight commands finish and leaves unstarted items untouched', async () => {
    const dir = folder('graceful');
    const items = ['i1', 'i2', 'i3', 'i4', 'i5', 'i6'];
    await lists().insertBatch('graceful', items);
    const script = `touch ${dir}/$0.started; while [ ! -e ${dir}/go ]; do sleep 0.02; done; touch ${dir}/$0.done`;
    const proc = start([
      'lists',
      'work',
      'graceful',
      '--concurrency',
      '2',
      '--',
      'sh',
      '-c',
      script,
      '{}',
    ]);
    const started = () => fs.readdirSync(dir).filter((f) => f.endsWith('.started'));
    await waitFor(() => started().length === 2);
    proc.child.kill('SIGTERM');
    await waitFor(() => proc.stderr().includes('stopping: claiming nothing more'));
    fs.writeFileSync(path.join(dir, 'go'), '');
    expect(await proc.exited).toBe(143);
    const ran = started().map((f) => f.replace('.started', ''));
    expect(ran).toHaveLength(2);
    for (const item of ran) expect(fs.existsSync(path.join(dir, `${item}.done`))).toBe(true);
    // The two that ran completed; the rest were never started: attempts 0, not leased.
    expect(await rows('graceful')).toEqual(
      items.filter((i) => !ran.includes(i)).map((item) => ({ item, attempts: 0, leased: false })),
    );
    expect(proc.stderr()).toMatch(/2 done.*stopped by SIGTERM/);
  });

  it('a second signal kills running commands and releases their items', async () => {
    const dir = folder('forced');
    await lists().insertBatch('forced', ['f1', 'f2', 'f3']);
    const script = `echo $$ > ${dir}/$0.pid; sleep 1000 & wait`;
    const proc = start([
      'lists',
      'work',
      'forced',
      '--concurrency',
      '2',
      '--',
      'sh',
      '-c',
      script,
      '{}',
    ]);
    const pids = () => fs.readdirSync(dir).filter((f) => f.endsWith('.pid'));
    await waitFor(
      () =>
        pids().length === 2 &&
        pids().every((f) => fs.readFileSync(path.join(dir, f), 'utf8').trim()),
    );
    proc.child.kill('SIGINT');
    await waitFor(() => proc.stderr().includes('stopping: claiming nothing more'));
    proc.child.kill('SIGINT');
    expect(await proc.exited).toBe(130);
    expect(proc.stderr()).toMatch(/forced: 2 running commands killed and released/);
    for (const f of pids()) {
      const pid = Number(fs.readFileSync(path.join(dir, f), 'utf8'));
      await waitFor(() => !isRunning(pid));
    }
    // Released, not failed: every item is back with no attempt counted.
    expect(await rows('forced')).toEqual(
      ['f1', 'f2', 'f3'].map((item) => ({ item, attempts: 0, leased: false })),
    );
  });

  it('a worker killed with SIGKILL loses nothing: its items come back when the lease ends', async () => {
    const dir = folder('killed');
    const items = ['k1', 'k2', 'k3', 'k4', 'k5'];
    await lists().insertBatch('killed', items);
    fs.writeFileSync(path.join(dir, 'block'), '');
    const script = `echo $$ >> ${dir}/$0.runs; while [ -e ${dir}/block ]; do sleep 0.02; done`;
    // A lease long enough that a loaded machine's late heartbeat does not lose it before the kill.
    const args = ['lists', 'work', 'killed', '--lease-ms', '1500', ...fast, '--concurrency', '2'];
    const doomed = start([...args, '--', 'sh', '-c', script, '{}']);
    const runs = () => fs.readdirSync(dir).filter((f) => f.endsWith('.runs'));
    await waitFor(() => runs().length === 2);
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    // Its commands lead their own process groups, so they outlive it: end them here.
    for (const f of runs()) {
      const pid = Number(fs.readFileSync(path.join(dir, f), 'utf8'));
      process.kill(-pid, 'SIGKILL');
      await waitFor(() => !isRunning(pid));
    }
    const held = runs().map((f) => f.replace('.runs', ''));
    fs.rmSync(path.join(dir, 'block'));
    // --until-empty waits for the dead worker's leases to end, then runs those items too.
    const r = await run([...args, '--', 'sh', '-c', script, '{}']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/5 done/);
    for (const item of items) {
      const times = fs
        .readFileSync(path.join(dir, `${item}.runs`), 'utf8')
        .trim()
        .split('\n');
      expect(times, item).toHaveLength(held.includes(item) ? 2 : 1);
    }
    expect(await lists().count('killed')).toBe(0);
  });

  it('two processes share a list: every item runs exactly once', async () => {
    const dir = folder('shared');
    const items = Array.from({ length: 60 }, (_, i) => `s${i}`);
    await lists().insertBatch('shared', items);
    const args = (name: string) => [
      'lists',
      'work',
      'shared',
      ...fast,
      '--concurrency',
      '4',
      '--',
      'sh',
      '-c',
      `echo ${name} >> ${dir}/$0`,
      '{}',
    ];
    const [a, b] = await Promise.all([run(args('a')), run(args('b'))]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const files = fs.readdirSync(dir).sort();
    expect(files).toEqual([...items].sort());
    const runners = files.map((f) => fs.readFileSync(path.join(dir, f), 'utf8'));
    for (const r of runners) expect(r).toMatch(/^[ab]\n$/);
    expect(await lists().count('shared')).toBe(0);
  });

  it('refuses a command that cannot run and bad options with exit 2, claiming nothing', async () => {
    await lists().insertBatch('refuse', ['r1', 'r2']);
    const notExecutable = path.join(tmp, 'not-executable.sh');
    fs.writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o644 });
    const cases: string[][] = [
      ['--', notExecutable, '{}'],
      ['--', 'no-such-command-pgcoord'],
      ['--', './not/here.sh', '{}'],
      ['--', path.join(tmp)],
      ['--concurrency', '0', '--', 'true'],
      ['--concurrency', 'NaN', '--', 'true'],
      ['--concurrency', '1e9', '--', 'true'],
      ['--concurrency', '1000000000', '--', 'true'],
      ['--retry-delay-ms', '-5', '--', 'true'],
      ['--timeout-ms', '-1', '--', 'true'],
      [],
    ];
    // All at once: none may claim anything, so they cannot disturb each other.
    const results = await Promise.all(
      cases.map((c) => run(['lists', 'work', 'refuse', '--until-empty', ...c])),
    );
    results.forEach((r, i) => {
      expect(r.code, cases[i]!.join(' ')).toBe(2);
      expect(r.stderr, cases[i]!.join(' ')).toMatch(/./);
    });
    expect(results[1]!.stderr).toBe(
      'pgcoord: command "no-such-command-pgcoord" not found on PATH\n',
    );
    expect(await rows('refuse')).toEqual([
      { item: 'r1', attempts: 0, leased: false },
      { item: 'r2', attempts: 0, leased: false },
    ]);
  });

  it('draws a progress line when asked (--progress always) and always prints a summary', async () => {
    await lists().insertBatch('progress', ['p1', 'p2']);
    const r = await run([
      'lists',
      'work',
      'progress',
      ...fast,
      '--progress',
      'always',
      '--',
      'true',
    ]);
    expect(r.code).toBe(0);
    // Each redraw returns to the line's start and clears it (ESC [K).
    const shown = r.stderr.replaceAll('\u001b', '<ESC>');
    expect(shown).toMatch(
      /\r<ESC>\[Kdone \d+ {2}failed 0 {2}dead 0 {2}in flight \d+ {2}[\d.]+\/s {2}ETA /,
    );
    expect(shown).toMatch(/\r<ESC>\[Klists work progress: 2 done/);
    const quiet = await run(['lists', 'work', 'progress', ...fast, '--', 'true']);
    expect(quiet.stderr).not.toContain('\r');
    expect(quiet.stderr).toMatch(/^lists work progress: 0 done/);
  });
});

describe('--log-dir file names', () => {
  it('any item maps to a distinct name inside the folder', () => {
    const item = fc.oneof(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }),
      fc.constantFrom('.', '..', '../..', '/etc/passwd', '%2E', '.%2E', 'a/../../b'),
    );
    fc.assert(
      fc.property(item, item, (a, b) => {
        const stem = logFileStem(a);
        expect(stem).not.toMatch(/^\.|\/|\\|\0/);
        expect(Buffer.byteLength(stem)).toBeLessThanOrEqual(200);
        expect(path.dirname(path.join('/logs', `${stem}.out`))).toBe('/logs');
        if (a !== b) expect(logFileStem(b)).not.toBe(stem);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('pgcoord lists import', () => {
  it('refuses input that is not UTF-8, naming the line, and imports nothing', async () => {
    const bad = Buffer.concat([
      Buffer.from('good-1\ngood-2\n'),
      Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x0a]),
      Buffer.from('good-3\n'),
    ]);
    const r = await run(['lists', 'import', 'utf8'], { input: bad });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('pgcoord: source: line 3 is not valid UTF-8 [PGCOORD_VALIDATION]\n');
    expect(await lists().count('utf8')).toBe(0);
    // A multi-byte character cut only by the pipe's chunking is fine.
    const ok = await run(['lists', 'import', 'utf8'], { input: Buffer.from('é\nü\n') });
    expect(ok.code).toBe(0);
    expect(await lists().count('utf8')).toBe(2);
  });
});
