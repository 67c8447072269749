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

/**
 * Quotes an SQL string literal so that the server reads back exactly `value` whatever
 * `standard_conforming_strings` says, including inside a function body parsed later by another
 * session: a value with a backslash becomes `E'...'` with backslashes and quotes doubled (read
 * the same under both settings), any other value `'...'` with quotes doubled. The same rule as
 * the server's own quote_literal().
 */
export function quoteLiteral(value: string): string {
  if (typeof value !== 'string') throw new ValidationError('literal', 'must be a string');
  if (value.includes('\u0000')) {
    throw new ValidationError('literal', 'must not contain a NUL byte');
  }
  const quoted = value.replaceAll("'", "''");
  return value.includes('\\') ? `E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/**
 * Wraps `body` in a dollar quote whose tag does not occur in it: `$base$`, else `$base_1$`,
 * `$base_2$`... The server ends a dollar-quoted string at the first occurrence of its tag, so
 * the tag is chosen where that first occurrence is the closing one (the check includes a tag
 * that would start inside the body's last characters). No escaping is involved, so no setting
 * of the server changes how the body is read.
 */
export function dollarQuote(body: string, base = 'pgcoord'): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(base)) {
    throw new ValidationError('base', 'must be a letter or "_" followed by letters, digits, "_"');
  }
  if (body.includes('\u0000')) throw new ValidationError('body', 'must not contain a NUL byte');
  // Each `$` of the body can start at most one tag, so this ends within (count of `$`) + 1 steps.
  for (let i = 0; ; i++) {
    const tag = i === 0 ? `$${base}$` : `$${base}_${i}$`;
    if ((body + tag).indexOf(tag) === body.length) return `${tag}${body}${tag}`;
  }
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
