// Every error code has an exit code and an HTTP status by decision, and the embedded database
// throws the subclasses callers branch on.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConflictError,
  DatabaseError,
  InternalError,
  PgcoordError,
  type ErrorCode,
} from '../../src/index.js';
import { EXIT, EmbeddedDatabase, exitCodeFor } from '../../src/cli/index.js';
import { EXIT_BY_CODE } from '../../src/cli/exit-codes.js';
import { STATUS_BY_CODE, toHttpError } from '../../src/server/http-errors.js';

const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcoord-errors-'));
afterAll(() => fs.rmSync(parent, { recursive: true, force: true }));

/** A data folder that looks initialized (no initdb needed to reach the checks under test). */
function fakeDataDir(name: string, settings: object | undefined): string {
  const dir = path.join(parent, name);
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'data', 'PG_VERSION'), '15\n');
  if (settings) fs.writeFileSync(path.join(dir, 'embedded.json'), JSON.stringify(settings));
  return dir;
}

describe('error codes', () => {
  it('the CLI and the HTTP service map the same codes, every one by decision', () => {
    expect(Object.keys(EXIT_BY_CODE).sort()).toEqual(Object.keys(STATUS_BY_CODE).sort());
    expect(EXIT_BY_CODE.PGCOORD_INTERNAL).toBe(EXIT.FAILURE);
    expect(STATUS_BY_CODE.PGCOORD_INTERNAL).toBe(500);
    for (const code of Object.keys(EXIT_BY_CODE) as ErrorCode[]) {
      expect(exitCodeFor(new PgcoordError(code, 'x')), code).toBe(EXIT_BY_CODE[code]);
    }
  });

  it('an internal error is a 500 PGCOORD_INTERNAL that does not leak its message', () => {
    for (const err of [new TypeError('secret detail'), new InternalError('secret detail')]) {
      const { status, body } = toHttpError(err);
      expect(status).toBe(500);
      expect(body.error.code).toBe('PGCOORD_INTERNAL');
      expect(body.error.message).not.toMatch(/secret/);
    }
    expect(exitCodeFor(new InternalError('bug'))).toBe(EXIT.FAILURE);
  });
});

describe('the embedded database', () => {
  it('a port held by another process is a ConflictError (exit 4), not a retryable ConnectionError', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const dir = fakeDataDir('port', { port, user: 'postgres', password: 'x' });
      const err = await EmbeddedDatabase.start({ dir, port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as PgcoordError).retryable).toBe(false);
      expect((err as Error).message).toMatch(`port ${port} on 127.0.0.1 is already in use`);
      expect(exitCodeFor(err)).toBe(EXIT.CONFLICT);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('a cluster without its credentials file is a DatabaseError instance', async () => {
    const dir = fakeDataDir('nocreds', undefined);
    const err = await EmbeddedDatabase.start({ dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseError);
    expect((err as PgcoordError).code).toBe('PGCOORD_DATABASE');
    expect((err as Error).message).toMatch(/embedded\.json \(its credentials\) is missing/);
  });
});
