import type { Queryable } from '../../src/index.js';

/**
 * A Queryable that fails the test if any statement reaches it: for checks that must refuse bad
 * input before SQL (a block built on it proves nothing ran).
 */
export const noSql: Queryable = {
  query() {
    throw new Error('no SQL may run here: the input should have been refused before');
  },
};
