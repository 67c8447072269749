// The consumer on the one Lifecycle (start/stop/asyncDispose) and the one Logger: what issue 13
// changed under it must keep working for every logger shape it accepted.
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ChangeCapture, ChangeConsumer, type Change, type LogEntry } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const running: ChangeConsumer[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
});

async function trackedTable(name: string): Promise<void> {
  await db.pool.query(`CREATE TABLE ${name} (id int PRIMARY KEY)`);
  await new ChangeCapture(db.pool).track(name);
}

/** Records the ids of `table`'s changes (a group from the beginning sees every table's). */
function collector(table: string, seen: number[]) {
  return async (changes: Change[]) => {
    for (const c of changes) if (c.table === table) seen.push((c.pk as { id: number }).id);
  };
}

describe('ChangeConsumer lifecycle', () => {
  it('await using stops it at the end of the scope; it starts again and misses nothing', async () => {
    await trackedTable('lc_scope');
    const seen: number[] = [];
    let outside: ChangeConsumer;
    {
      await using consumer = new ChangeConsumer(db.pool, {
        group: 'scope',
        startFrom: 'beginning',
        pruneIntervalMs: 0,
        handler: collector('lc_scope', seen),
      });
      outside = consumer;
      await consumer.start();
      await db.pool.query('INSERT INTO lc_scope VALUES (1)');
      await waitFor(() => seen.length === 1);
    }
    expect(outside.signals.stopped.count).toBe(1);
    await db.pool.query('INSERT INTO lc_scope VALUES (2)');
    running.push(outside);
    await outside.start();
    await waitFor(() => seen.length === 2);
    expect(seen).toEqual([1, 2]);
    expect(outside.signals.started.count).toBe(2);
  });

  it('stop() while start() is in flight: both settle, nothing runs, and it starts again', async () => {
    await trackedTable('lc_race');
    const seen: number[] = [];
    const consumer = new ChangeConsumer(db.pool, {
      group: 'race',
      startFrom: 'beginning',
      pruneIntervalMs: 0,
      handler: collector('lc_race', seen),
    });
    running.push(consumer);
    const starting = consumer.start();
    const stopping = consumer.stop();
    await Promise.all([starting.catch(() => undefined), stopping]);
    expect(consumer.signals.stopped.count).toBe(1);
    // Never ran: the start saw the stop before its workers began.
    expect(consumer.signals.started.count).toBe(0);
    await db.pool.query('INSERT INTO lc_race VALUES (7)');
    await consumer.start();
    await waitFor(() => seen.length === 1);
    expect(seen).toEqual([7]);
  });
});

describe('ChangeConsumer logger', () => {
  /** A consumer that never gets past its first change and warns about its lag. */
  async function stalledConsumer(group: string, logger: unknown): Promise<ChangeConsumer> {
    const consumer = new ChangeConsumer(db.pool, {
      group,
      startFrom: 'beginning',
      retryBaseMs: 3_600_000,
      pruneIntervalMs: 50,
      lagWarning: 1,
      logger: logger as never,
      handler: async () => {
        throw new Error('stalled');
      },
    });
    running.push(consumer);
    await consumer.start();
    return consumer;
  }

  it('writes lag warnings to a pino logger as (fields, message) and to an entry function', async () => {
    await trackedTable('lc_log');
    await db.pool.query('INSERT INTO lc_log SELECT generate_series(1, 5)');
    const lines: Array<Record<string, unknown>> = [];
    const viaPino = await stalledConsumer(
      'pino',
      pino({}, { write: (line: string) => void lines.push(JSON.parse(line)) }),
    );
    const entries: LogEntry[] = [];
    const viaFunction = await stalledConsumer('entries', (e: LogEntry) => void entries.push(e));
    await nextEvent(viaPino, 'lag');
    await nextEvent(viaFunction, 'lag');
    await waitFor(() => lines.length > 0 && entries.length > 0);
    expect(lines[0]).toMatchObject({
      level: 40,
      group: 'pino',
      partition: 0,
      msg: expect.stringContaining('"pino" partition 0 lags by'),
    });
    expect(entries[0]).toMatchObject({
      level: 'warn',
      group: 'entries',
      message: expect.stringContaining('"entries" partition 0 lags by'),
    });
  });

  it('logs a background failure nobody listens for, message first as before, with its code', async () => {
    await trackedTable('lc_fail');
    const errors: Array<{ message: string; fields: Record<string, unknown> }> = [];
    const consumer = new ChangeConsumer(db.pool, {
      group: 'failing',
      pruneIntervalMs: 0,
      fullPollIntervalMs: 10,
      logger: {
        warn: () => undefined,
        error: (message, fields) =>
          errors.push({ message, fields: (fields ?? {}) as Record<string, unknown> }),
      },
      handler: async () => undefined,
    });
    running.push(consumer);
    await consumer.start();
    // Every batch statement now fails in the database, outside any handler.
    await db.pool.query('ALTER TABLE pgcoord.change_groups RENAME TO change_groups_gone');
    try {
      await waitFor(() => errors.length > 0);
    } finally {
      await db.pool.query('ALTER TABLE pgcoord.change_groups_gone RENAME TO change_groups');
    }
    expect(errors[0]!.message).toMatch(/^change consumer "failing": .*change_groups/);
    expect(errors[0]!.fields).toMatchObject({ group: 'failing', code: expect.any(String) });
  });
});
