import type pg from 'pg';
import type { TestDatabase } from './db.js';

/**
 * How a session parses SQL: `off` sets `standard_conforming_strings = off` (a backslash in a plain
 * '' literal is an escape); `off-nocheck` also sets `check_function_bodies = off` (a function is
 * created without parsing its body, so a body that ends early runs what follows as statements).
 */
export type SessionSetting = 'on' | 'off' | 'off-nocheck';

const OPTIONS: Record<SessionSetting, string> = {
  on: '-c standard_conforming_strings=on',
  off: '-c standard_conforming_strings=off',
  'off-nocheck': '-c standard_conforming_strings=off -c check_function_bodies=off',
};

/** One small pool per setting on the file's database, made on first use (closed with the file). */
export function sessionPools(db: TestDatabase): (setting: SessionSetting) => pg.Pool {
  const pools = new Map<SessionSetting, pg.Pool>();
  return (setting) => {
    let pool = pools.get(setting);
    if (!pool) {
      pool = db.newPool({ max: 2, options: OPTIONS[setting] });
      pools.set(setting, pool);
    }
    return pool;
  };
}
