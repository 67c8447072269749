/** A one-shot wake-up for callers waiting on a topology change. */
export interface Signal {
  /** Wakes every current waiter. */
  resolve(): void;
  /** Resolves on `resolve()` or after `ms` milliseconds, whichever comes first. */
  wait(ms: number): Promise<void>;
}

/**
 * Creates a {@link Signal}. The cluster pool replaces it after each wake-up, so a caller that
 * waits again waits for the next change. The timer keeps the process alive on purpose: a caller
 * is waiting for an answer (the pool's own poller timer is unref'd).
 */
export function signal(): Signal {
  let resolveFn!: () => void;
  const promise = new Promise<void>((r) => (resolveFn = r));
  return {
    resolve: resolveFn,
    wait(ms) {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([
        promise,
        new Promise<void>((r) => {
          timer = setTimeout(r, ms);
        }),
      ]).finally(() => clearTimeout(timer));
    },
  };
}
