// The worker's numeric options, fuzzed: every whole number in range is taken, anything else is a
// ValidationError naming the option, before anything runs (no database here).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ATTEMPT_LIST_LIMITS,
  MAX_WORKER_CONCURRENCY,
  MAX_WORKER_LIVE_INTERVAL_MS,
  MAX_WORKER_TIMER_MS,
  ValidationError,
  resolveWorkerOptions,
  type WorkerOptions,
} from '../../src/index.js';

const MAX_MS = ATTEMPT_LIST_LIMITS.maxLeaseMs;
const RANGES: Array<[keyof WorkerOptions, number, number]> = [
  ['concurrency', 1, MAX_WORKER_CONCURRENCY],
  ['leaseMs', 30, MAX_MS],
  ['pollIntervalMs', 1, MAX_WORKER_TIMER_MS],
  ['maxAttempts', 1, ATTEMPT_LIST_LIMITS.maxAttempts],
  ['retryDelayMs', 0, MAX_MS],
  ['maxRetryDelayMs', 0, MAX_MS],
  ['timeoutMs', 1, MAX_WORKER_TIMER_MS],
  ['stopTimeoutMs', 0, MAX_WORKER_TIMER_MS],
  ['liveTtlMs', 30, MAX_MS],
];

function refusal(options: WorkerOptions): unknown {
  try {
    resolveWorkerOptions(options);
    return undefined;
  } catch (err) {
    return err;
  }
}

describe('worker options', () => {
  it('take every whole number in range', () => {
    for (const [name, min, max] of RANGES) {
      fc.assert(
        fc.property(fc.integer({ min, max }), (value) => {
          expect(refusal({ [name]: value }), name).toBeUndefined();
        }),
        { numRuns: 100 },
      );
    }
  });

  it('refuse anything else with a ValidationError naming the option', () => {
    for (const [name, min, max] of RANGES) {
      const bad = fc.oneof(
        fc.integer({ max: min - 1 }),
        fc.double({ min: max + 1, noNaN: true }),
        fc.double({ noNaN: false }).filter((v) => !Number.isInteger(v)),
        fc.constantFrom(Number.NaN, Infinity, -Infinity, '10', null, true, [1], {}),
      );
      fc.assert(
        fc.property(bad, (value) => {
          const err = refusal({ [name]: value } as WorkerOptions);
          expect(err, `${name}: ${String(value)}`).toBeInstanceOf(ValidationError);
          expect((err as ValidationError).argument).toBe(`options.${name}`);
        }),
        { numRuns: 100 },
      );
    }
  });

  it('refresh the live row every 5 s, or three times per horizon when that is shorter', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 30, max: MAX_MS }),
        fc.integer({ min: 30, max: MAX_MS }),
        (leaseMs, liveTtlMs) => {
          const o = resolveWorkerOptions({ leaseMs, liveTtlMs });
          expect(o.liveIntervalMs).toBe(
            Math.max(10, Math.min(MAX_WORKER_LIVE_INTERVAL_MS, Math.floor(liveTtlMs / 3))),
          );
        },
      ),
    );
    expect(resolveWorkerOptions().liveIntervalMs).toBe(5_000);
    expect(resolveWorkerOptions().liveTtlMs).toBe(60_000);
  });
});
