import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  ConnectionError,
  DatabaseError,
  PgcoordError,
  ValidationError,
  coerceError,
} from '../../src/index.js';
import { checkInt, checkText } from '../../src/core/validate.js';
import { useTestDatabase } from '../helpers/db.js';

const db = useTestDatabase({ migrate: false });

describe('coerceError', () => {
  it('keeps SQLSTATE, detail and constraint of a server refusal', async () => {
    await db.pool.query('CREATE TABLE t (id int PRIMARY KEY)');
    await db.pool.query('INSERT INTO t VALUES (1)');
    const raw = await db.pool.query('INSERT INTO t VALUES (1)').catch((e: unknown) => e);
    const err = coerceError(raw);
    expect(err).toBeInstanceOf(DatabaseError);
    expect(err.code).toBe('PGCOORD_DATABASE');
    expect((err as DatabaseError).sqlState).toBe('23505');
    expect((err as DatabaseError).constraint).toBe('t_pkey');
    expect((err as DatabaseError).detail).toMatch(/already exists/);
    expect(err.retryable).toBe(false);
    expect(err.cause).toBe(raw);
  });

  it('classifies a terminated backend as a retryable ConnectionError', async () => {
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => undefined);
    await client.connect();
    const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    const raw = await client.query('SELECT 1').catch((e: unknown) => e);
    await client.end().catch(() => undefined);
    const err = coerceError(raw);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.retryable).toBe(true);
  });

  it('classifies a refused connection and passes pgcoord errors through', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: 1, user: 'x', database: 'x' });
    const raw = await client.connect().catch((e: unknown) => e);
    expect(coerceError(raw)).toBeInstanceOf(ConnectionError);
    const v = new ValidationError('count', 'must be positive');
    expect(coerceError(v)).toBe(v);
    expect(coerceError('weird')).toBeInstanceOf(PgcoordError);
  });
});

describe('validation', () => {
  it('names the argument and the limit', () => {
    expect(() => checkText('list', '', { maxBytes: 10 })).toThrow(/list: must not be empty/);
    expect(() => checkText('list', 'a\u0000b', { maxBytes: 10 })).toThrow(/NUL/);
    expect(() => checkText('list', 'é'.repeat(6), { maxBytes: 10 })).toThrow(
      /12 bytes; the limit is 10/,
    );
    expect(() => checkText('list', 42, { maxBytes: 10 })).toThrow(/must be a string, got 42/);
    expect(() => checkText('list', '\ud800', { maxBytes: 10 })).toThrow(/lone surrogate/);
    expect(() => checkInt('count', 0, { min: 1, max: 5 })).toThrow(/between 1 and 5, got 0/);
    expect(() => checkInt('count', 1.5, { min: 1, max: 5 })).toThrow(/integer/);
    expect(checkInt('count', 5, { min: 1, max: 5 })).toBe(5);
  });
});

describe('isConnectionSqlState', () => {
  it('treats class 08 and shutdowns as connectivity, but not a protocol violation', async () => {
    const { isConnectionSqlState } = await import('../../src/index.js');
    expect(isConnectionSqlState('08006')).toBe(true);
    expect(isConnectionSqlState('57P01')).toBe(true);
    expect(isConnectionSqlState('08P01')).toBe(false);
    expect(isConnectionSqlState('23505')).toBe(false);
    expect(isConnectionSqlState(undefined)).toBe(false);
  });
});
