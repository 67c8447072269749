// What `pgcoord lists work` prints: each run's output (prefixed by its item, or into --log-dir
// files), the live progress line on a terminal, and the summary.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** A line longer than this is written out in pieces, each prefixed (bounded memory per run). */
const MAX_LINE_CHARS = 64 * 1024;
/** Longest file name stem in --log-dir, in bytes (file systems allow 255 with the extension). */
const MAX_STEM_BYTES = 200;

/**
 * The terminal's bottom line: counters redrawn in place at most every `intervalMs`. Every other
 * line written to stderr or stdout goes through {@link write}, which clears the line first so
 * output and progress never mix on one line.
 */
export class ProgressLine {
  private shown = false;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly render: () => string,
    /** Whether the line is drawn at all (a terminal, or asked for). */
    readonly enabled: boolean,
    private readonly intervalMs = 200,
  ) {}

  start(): void {
    if (!this.enabled || this.timer) return;
    this.draw();
    this.timer = setInterval(() => this.draw(), this.intervalMs);
    this.timer.unref();
  }

  /** Writes whole lines to a stream without tearing the progress line; false when its buffer is full. */
  write(stream: Writable, text: string): boolean {
    this.clear();
    return stream.write(text);
  }

  /** Stops redrawing and removes the line. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }

  private draw(): void {
    process.stderr.write(`\r\x1b[K${this.render()}`);
    this.shown = true;
  }

  private clear(): void {
    if (!this.shown) return;
    process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}

/** An item as it appears in a prefix: control characters escaped, so one line stays one line. */
export function printable(item: string): string {
  let text = '';
  for (const c of item) {
    const code = c.charCodeAt(0);
    text += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : c;
  }
  return text;
}

/**
 * Copies a run's output stream line by line to `write`, each line prefixed with `[item] `; a
 * last line without a newline gets one. When `write` reports a full buffer (a slow reader of our
 * stdout), reading pauses until `drained` resolves, so the command waits rather than our memory
 * growing. Resolves when the stream has ended.
 */
export function prefixLines(
  source: Readable,
  item: string,
  write: (text: string) => boolean,
  drained: () => Promise<void>,
): Promise<void> {
  const prefix = `[${printable(item)}] `;
  source.setEncoding('utf8');
  let rest = '';
  let full = false;
  const send = (text: string) => {
    if (!write(text)) full = true;
  };
  source.on('data', (chunk: string) => {
    rest += chunk;
    const nl = rest.lastIndexOf('\n');
    if (nl >= 0) {
      const lines = rest.slice(0, nl).split('\n');
      rest = rest.slice(nl + 1);
      send(lines.map((l) => prefix + l + '\n').join(''));
    }
    while (rest.length > MAX_LINE_CHARS) {
      send(prefix + rest.slice(0, MAX_LINE_CHARS) + '\n');
      rest = rest.slice(MAX_LINE_CHARS);
    }
    if (full) {
      full = false;
      source.pause();
      void drained().then(() => source.resume());
    }
  });
  return new Promise((resolve) => {
    const done = () => {
      if (rest.length > 0) send(prefix + rest + '\n');
      rest = '';
      resolve();
    };
    source.once('end', done);
    source.once('error', done);
  });
}

/**
 * The file name stem of an item's logs in --log-dir: every byte outside `[A-Za-z0-9_.-]` is
 * percent-encoded (`/` too, so nothing leaves the folder), and so is a leading dot (no `.`, `..`
 * or hidden files). Distinct items get distinct names; one past 200 bytes is cut and ends with
 * a hash of the whole item instead.
 */
export function logFileStem(item: string): string {
  let stem = '';
  for (const byte of Buffer.from(item, 'utf8')) {
    const c = String.fromCharCode(byte);
    stem += /[A-Za-z0-9_.-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (stem.startsWith('.')) stem = '%2E' + stem.slice(1);
  if (stem.length > MAX_STEM_BYTES) {
    const hash = createHash('sha256').update(item, 'utf8').digest('hex').slice(0, 16);
    stem = `${stem.slice(0, MAX_STEM_BYTES - 18).replace(/%[0-9A-F]?$/, '')}~${hash}`;
  }
  return stem;
}

/**
 * Appends a run's stdout and stderr to `<dir>/<stem>.out` and `.err` (a retry appends to the
 * same files). Resolves once both are written and closed.
 */
export async function logToFiles(
  dir: string,
  item: string,
  stdout: Readable,
  stderr: Readable,
): Promise<void> {
  const stem = path.join(dir, logFileStem(item));
  const copy = (source: Readable, file: string) =>
    new Promise<void>((resolve) => {
      const sink = fs.createWriteStream(file, { flags: 'a' });
      sink.once('close', resolve);
      sink.once('error', () => {
        source.resume();
        resolve();
      });
      source.pipe(sink);
    });
  await Promise.all([copy(stdout, `${stem}.out`), copy(stderr, `${stem}.err`)]);
}

/** `1m05s`, `42s`, `2h03m`: a short duration for the progress line. */
export function shortDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
