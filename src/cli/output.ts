/** Writes one line to stdout (results; errors and progress go to stderr). */
export function out(line: string): void {
  process.stdout.write(line + '\n');
}

/** Writes a value as one JSON line to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}
