import { Writable } from 'node:stream';
import Fastify from 'fastify';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConnectionError, ValidationError, type Logger } from '../../src/index.js';
import { logError, noopLogger, resolveLogger, type LogEntry } from '../../src/core/index.js';

/** A real pino logger writing JSON lines into `lines`. */
function pinoInto(lines: Array<Record<string, unknown>>): pino.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return pino({ level: 'debug' }, sink);
}

describe('Logger', () => {
  it('a real pino logger is a Logger, used as it is', () => {
    const lines: Array<Record<string, unknown>> = [];
    const p = pinoInto(lines);
    const typed: Logger = p; // compiles: pino satisfies the type
    expect(resolveLogger(typed)).toBe(p);
    // Even where the option used to be message-first: pino is recognised, not adapted.
    expect(resolveLogger(p, { objectShape: 'message-first' })).toBe(p);
    const child = p.child({ reqId: 7 });
    expect(resolveLogger(child, { objectShape: 'message-first' })).toBe(child);
    resolveLogger(child).warn({ attempt: 2 }, 'reconnecting');
    expect(lines).toMatchObject([{ level: 40, reqId: 7, attempt: 2, msg: 'reconnecting' }]);
  });

  it("Fastify's request logger is a Logger", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const app = Fastify({ loggerInstance: pinoInto(lines) });
    let seen: Logger | undefined;
    app.get('/', async (request) => {
      seen = resolveLogger(request.log, { objectShape: 'message-first' });
      seen.info({ route: '/' }, 'hello');
      return 'ok';
    });
    await app.inject({ method: 'GET', url: '/' });
    await app.close();
    expect(seen).toBeDefined();
    expect(lines.some((l) => l.msg === 'hello' && l.route === '/' && l.reqId)).toBe(true);
  });

  it('adapts the earlier shapes: message-first objects and entry functions', () => {
    const calls: unknown[][] = [];
    const legacy = { warn: (m: string, f?: object) => calls.push(['warn', m, f]) };
    const a = resolveLogger(legacy, { objectShape: 'message-first' });
    a.warn({ code: 'PGCOORD_CONNECTION' }, 'kv reaper failed');
    a.error({ x: 1 }, 'not there'); // a missing method is a no-op
    expect(calls).toEqual([['warn', 'kv reaper failed', { code: 'PGCOORD_CONNECTION' }]]);

    const entries: LogEntry[] = [];
    const b = resolveLogger((e: LogEntry) => entries.push(e));
    b.info({ instance: 'h1:5432' }, 'instance up');
    expect(entries).toEqual([{ level: 'info', message: 'instance up', instance: 'h1:5432' }]);

    // A resolved logger passes through again unchanged (the server hands its own to blocks).
    expect(resolveLogger(a)).toBe(a);
    expect(resolveLogger(undefined)).toBe(noopLogger);
  });

  it('takes a plain (obj, msg) object as a Logger, filling missing methods', () => {
    const calls: unknown[][] = [];
    const custom = {
      prefix: 'p',
      warn(this: { prefix: string }, obj: object, msg?: string) {
        calls.push([this.prefix, obj, msg]);
      },
    };
    const l = resolveLogger(custom);
    l.warn({ a: 1 }, 'm');
    l.debug({}, 'dropped');
    expect(calls).toEqual([['p', { a: 1 }, 'm']]);
    expect(Object.isFrozen(l)).toBe(true);
  });

  it('refuses what is not a logger, naming the option', () => {
    expect(() => resolveLogger('yes', { argument: 'options.logger' })).toThrow(ValidationError);
    expect(() => resolveLogger('yes')).toThrow(/options\.logger: must be a logger/);
    expect(() => resolveLogger({ warn: 1 })).toThrow(
      /options\.logger\.warn: must be a function, got 1/,
    );
    expect(() => resolveLogger(null)).toThrow(/got null/);
  });

  it('logError logs the failure with its context and code, and survives a throwing logger', () => {
    const lines: Array<Record<string, unknown>> = [];
    const err = new ConnectionError('down');
    logError(pinoInto(lines), err, 'round failed', { name: 'scheduler' }, 'warn');
    expect(lines).toMatchObject([
      { level: 40, msg: 'round failed', name: 'scheduler', code: 'PGCOORD_CONNECTION' },
    ]);
    expect((lines[0]!.err as { message: string }).message).toBe('down');
    const throwing: Logger = {
      ...noopLogger,
      error: () => {
        throw new Error('disk full');
      },
    };
    expect(() => logError(throwing, new Error('x'), 'failed')).not.toThrow();
  });
});
