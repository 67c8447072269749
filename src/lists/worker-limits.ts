// A worker's `limits` option (keys and limits, migration 0014): merged over the list's stored
// limits and stored before the worker claims anything. Kept out of worker.ts (the claim loop).
import { backoffDelayMs, reportError, sleep } from '../core/index.js';
import type { StoredListLimits } from './attempt-list-settings.js';
import type { AttemptList } from './attempt-list.js';
import type { EventEmitter } from 'node:events';
import type { ResolvedWorkerOptions } from './worker-options.js';

/** Delay before trying again after a failure: first, in ms (the cap is the poll interval). */
export const CLAIM_RETRY_BASE_MS = 50;

/** Stored limits with a worker's over them (a field the worker gives replaces the stored one). */
export function mergeLimits(stored: StoredListLimits, wanted: StoredListLimits): StoredListLimits {
  const out: StoredListLimits = {};
  const keyRegex = wanted.keyRegex ?? stored.keyRegex;
  if (keyRegex !== undefined) out.keyRegex = keyRegex;
  const perKey = { ...stored.perKey, ...wanted.perKey };
  if (perKey.concurrency !== undefined || perKey.rate !== undefined) {
    out.perKey = {};
    if (perKey.concurrency !== undefined) out.perKey.concurrency = perKey.concurrency;
    if (perKey.rate !== undefined) out.perKey.rate = perKey.rate;
  }
  const concurrency = wanted.concurrency ?? stored.concurrency;
  if (concurrency !== undefined) out.concurrency = concurrency;
  return out;
}

/**
 * Stores a worker's `limits` on `list` when they differ from the stored ones (fields it leaves
 * out keep their stored values). Retried with the claim backoff until it succeeds or `stopping()`:
 * no item is claimed under other limits than the ones asked for. Failures are reported on
 * `emitter` (the worker).
 */
export async function applyLimits(
  attemptList: AttemptList,
  list: string,
  options: ResolvedWorkerOptions,
  how: { emitter: EventEmitter; stopping: () => boolean; signal: AbortSignal },
): Promise<void> {
  const wanted = options.limits;
  if (wanted === undefined) return;
  for (let failures = 1; !how.stopping(); failures++) {
    try {
      const stored = await attemptList.limits(list);
      const merged = mergeLimits(stored, wanted);
      if (JSON.stringify(merged) !== JSON.stringify(stored)) {
        await attemptList.setLimits(list, merged);
      }
      return;
    } catch (err) {
      reportError(how.emitter, options.logger, err, 'worker could not set the list limits', {
        list,
      });
      await sleep(
        backoffDelayMs(failures, {
          baseMs: CLAIM_RETRY_BASE_MS,
          maxMs: options.pollIntervalMs,
          jitter: 'equal',
        }),
        how.signal,
      );
    }
  }
}
