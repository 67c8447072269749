import { createHash } from 'node:crypto';

/** Wake-up channel of a pgcoord schema (a hash keeps it within 63 bytes). */
export function wakeChannel(schema: string): string {
  return `pgcoord_changes_${createHash('sha1').update(schema).digest('hex').slice(0, 16)}`;
}
