import { describe, expect, it } from 'vitest';
import { Coalescer } from '../../src/core/coalescer.js';

describe('Coalescer', () => {
  it('sends concurrent submissions together and keeps each result with its caller', async () => {
    const batches: number[][] = [];
    const c = new Coalescer<number, number>(async (items) => {
      batches.push(items);
      await Promise.resolve();
      return items.map((i) => i * 2);
    });
    const results = await Promise.all([1, 2, 3, 4].map((i) => c.submit(i)));
    expect(results).toEqual([2, 4, 6, 8]);
    expect(batches).toEqual([[1, 2, 3, 4]]);
  });

  it('queues behind a running flush, caps batch size, and rejects per item or per batch', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const batches: string[][] = [];
    const c = new Coalescer<string, string>(
      async (items) => {
        batches.push(items);
        if (batches.length === 1) await gate;
        if (items.includes('boom')) throw new Error('batch failed');
        return items.map((i) => (i === 'bad' ? new Error('bad item') : i.toUpperCase()));
      },
      { maxBatch: 2 },
    );
    const first = c.submit('a');
    await Promise.resolve();
    await Promise.resolve();
    const rest = ['b', 'bad', 'c', 'boom'].map((i) => c.submit(i).catch((e: Error) => e.message));
    expect(c.pending).toBe(4);
    release();
    expect(await first).toBe('A');
    expect(await Promise.all(rest)).toEqual(['B', 'bad item', 'batch failed', 'batch failed']);
    expect(batches).toEqual([['a'], ['b', 'bad'], ['c', 'boom']]);
  });
});
