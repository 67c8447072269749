/**
 * Group commit for concurrent calls: items submitted while `maxInFlight` flushes are running wait
 * and leave together in the next flush, so N concurrent callers cost about N / batch round trips
 * instead of N. No timer: at low load an item leaves at once (one microtask later); batches grow
 * only as load grows. Used wherever one statement can decide many callers' items (rate-limit
 * decisions, notifications).
 */
export interface CoalescerOptions {
  /** Most items in one flush. Default 500. */
  maxBatch?: number;
  /** Flushes allowed to run at the same time (e.g. pool connections to use). Default 1. */
  maxInFlight?: number;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

export class Coalescer<I, O> {
  private readonly flushFn: (items: I[]) => Promise<Array<O | Error>>;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private queue: Array<Pending<I, O>> = [];
  private inFlight = 0;
  private scheduled = false;

  /**
   * @param flush decides a batch; must return one result per item, in order. An `Error` in the
   *   result rejects only that item; a thrown error rejects the whole batch.
   */
  constructor(flush: (items: I[]) => Promise<Array<O | Error>>, options: CoalescerOptions = {}) {
    this.flushFn = flush;
    this.maxBatch = options.maxBatch ?? 500;
    this.maxInFlight = options.maxInFlight ?? 1;
  }

  /** Items waiting for a flush. */
  get pending(): number {
    return this.queue.length;
  }

  /** Flushes running now. */
  get running(): number {
    return this.inFlight;
  }

  /** Queues one item; resolves with its own result when its batch has been decided. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // One microtask lets every caller of the current tick join the batch.
    queueMicrotask(() => {
      this.scheduled = false;
      while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
        void this.flush(this.queue.splice(0, this.maxBatch));
      }
    });
  }

  private async flush(batch: Array<Pending<I, O>>): Promise<void> {
    this.inFlight++;
    try {
      const results = await this.flushFn(batch.map((p) => p.item));
      if (results.length !== batch.length) {
        throw new Error(
          `coalescer: flush returned ${results.length} results for ${batch.length} items`,
        );
      }
      batch.forEach((p, i) => {
        const r = results[i] as O | Error;
        if (r instanceof Error) p.reject(r);
        else p.resolve(r);
      });
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.inFlight--;
      this.schedule();
    }
  }
}
