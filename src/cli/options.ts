import { InvalidArgumentError } from 'commander';

/** Options every command accepts. */
export interface GlobalOptions {
  databaseUrl?: string;
  dataDir: string;
  schema?: string;
  json?: boolean;
  verbose?: boolean;
}

/** A positive whole number option. */
export function parseCount(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('must be a whole number of at least 1.');
  }
  return Number(value);
}

/** A TCP port (0 = any free one). */
export function parsePort(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535) {
    throw new InvalidArgumentError('must be a whole number from 0 to 65535.');
  }
  return Number(value);
}
