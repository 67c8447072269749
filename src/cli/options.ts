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

/** A whole number, 0 or more. */
export function parseWholeNumber(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('must be a whole number (0 or more).');
  }
  return Number(value);
}

/** An integer, possibly negative (its range is checked by whatever takes it). */
export function parseInteger(value: string): number {
  if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('must be an integer.');
  }
  return Number(value);
}

/** A date and time in ISO 8601 (`2030-01-01T09:00:00Z`; without a zone: local time). */
export function parseDate(value: string): Date {
  const d = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(
    value,
  )
    ? new Date(value)
    : new Date(NaN);
  if (Number.isNaN(d.getTime())) {
    throw new InvalidArgumentError(
      'must be a date and time in ISO 8601, e.g. 2030-01-01T09:00:00Z.',
    );
  }
  return d;
}

/** A TCP port (0 = any free one). */
export function parsePort(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535) {
    throw new InvalidArgumentError('must be a whole number from 0 to 65535.');
  }
  return Number(value);
}
