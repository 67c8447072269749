// Consumer groups created on their own (the HTTP service creates a group before any client streams
// it), and the consumer that finds its group already there.
import { afterEach, describe, expect, it } from 'vitest';
import {
  ChangeCapture,
  ChangeConsumer,
  ConflictError,
  ValidationError,
  type Change,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const running: ChangeConsumer[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
});

describe('ChangeCapture.createGroup', () => {
  it('creates a group once, where startFrom says, and a consumer takes it from there', async () => {
    await db.pool.query('CREATE TABLE cg (id int PRIMARY KEY)');
    const capture = new ChangeCapture(db.pool);
    await capture.track('cg');
    await db.pool.query('INSERT INTO cg VALUES (1)');
    expect(await capture.createGroup('from-start', { startFrom: 'beginning' })).toBe(true);
    expect(await capture.createGroup('from-start', { startFrom: 'now' })).toBe(false);
    expect(await capture.createGroup('from-now')).toBe(true);
    const groups = await capture.groups();
    expect(groups.filter((g) => g.group === 'from-start' || g.group === 'from-now')).toEqual([
      expect.objectContaining({ group: 'from-now', mode: 'ordered', partitions: 1 }),
      expect.objectContaining({ group: 'from-start', mode: 'ordered', partitions: 1 }),
    ]);
    await db.pool.query('INSERT INTO cg VALUES (2)');
    const seen = new Map<string, number[]>();
    for (const group of ['from-start', 'from-now']) {
      const consumer = new ChangeConsumer(db.pool, {
        group,
        pruneIntervalMs: 0,
        handler: async (changes: Change[]) => {
          const ids = seen.get(group) ?? [];
          for (const c of changes) ids.push((c.pk as { id: number }).id);
          seen.set(group, ids);
        },
      });
      running.push(consumer);
      await consumer.start();
    }
    await waitFor(() => seen.get('from-start')?.length === 2 && seen.get('from-now')?.length === 1);
    expect(seen.get('from-start')).toEqual([1, 2]);
    expect(seen.get('from-now')).toEqual([2]);
  });

  it('refuses a group that exists in another mode without touching it, and bad arguments', async () => {
    const capture = new ChangeCapture(db.pool);
    expect(await capture.createGroup('lanes', { mode: 'parallel', partitions: 2 })).toBe(true);
    await expect(capture.createGroup('lanes', { mode: 'parallel', partitions: 4 })).rejects.toThrow(
      ConflictError,
    );
    await expect(capture.createGroup('lanes')).rejects.toThrow(ConflictError);
    expect((await capture.groups()).filter((g) => g.group === 'lanes')).toHaveLength(2);
    for (const [group, options, argument] of [
      ['', {}, 'group'],
      ['a\u0000b', {}, 'group'],
      ['日'.repeat(67), {}, 'group'],
      ['g', { startFrom: 'yesterday' }, 'options.startFrom'],
      ['g', { mode: 'fast' }, 'options.mode'],
      ['g', { mode: 'ordered', partitions: 2 }, 'options.partitions'],
      ['g', { mode: 'parallel', partitions: 0 }, 'options.partitions'],
    ] as const) {
      const err = await capture.createGroup(group, options as never).catch((e: unknown) => e);
      expect(err, `${group} ${JSON.stringify(options)}`).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).argument).toBe(argument);
    }
    expect((await capture.groups()).map((g) => g.group)).not.toContain('g');
  });
});
