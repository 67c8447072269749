import { ValidationError } from './errors.js';

/**
 * Quotes an SQL identifier (schema, table, column, channel). The one place identifiers enter
 * SQL text: double quotes are doubled, case and every other character are preserved.
 */
export function quoteIdent(name: string): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new ValidationError('identifier', 'must be a non-empty string');
  }
  if (name.includes('\u0000')) {
    throw new ValidationError('identifier', 'must not contain a NUL byte');
  }
  return `"${name.replaceAll('"', '""')}"`;
}

/** PostgreSQL truncates identifiers past 63 bytes (NAMEDATALEN - 1). */
export const MAX_IDENTIFIER_BYTES = 63;

/** Checks a schema name option: non-empty, no NUL, at most 63 bytes. Returns it unchanged. */
export function checkSchemaName(schema: unknown, argument = 'options.schema'): string {
  if (typeof schema !== 'string' || schema.length === 0) {
    throw new ValidationError(argument, 'must be a non-empty string');
  }
  if (schema.includes('\u0000')) throw new ValidationError(argument, 'must not contain a NUL byte');
  // The migrations put the schema name inside dollar-quoted function bodies, which a `$` in the
  // name could close early.
  if (schema.includes('$')) throw new ValidationError(argument, 'must not contain "$"');
  if (Buffer.byteLength(schema) > MAX_IDENTIFIER_BYTES) {
    throw new ValidationError(argument, `must be at most ${MAX_IDENTIFIER_BYTES} bytes`);
  }
  return schema;
}

/** Default schema of every block. */
export const DEFAULT_SCHEMA = 'pgcoord';
