import { ClosedError } from '../core/index.js';
import type { Notification } from './listener-connection.js';

/** What to do when an iterator's buffer is full and another notification arrives. */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'error';

/** Options of `Listener.iterate`. */
export interface IterateOptions {
  /** Notifications buffered while the consumer is busy. Default 1000. */
  bufferSize?: number;
  /**
   * Policy when the buffer is full. Default `'drop-oldest'` (keep the freshest). `'drop-newest'`
   * discards the arriving one; `'error'` ends the iterator: it yields what is buffered and then
   * throws a `ClosedError`. Every drop emits an `overflow` event.
   */
  overflow?: OverflowPolicy;
}

/** A first-in first-out queue with O(1) push and shift (an array with a moving head). */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined as T;
    // Compact once the consumed prefix is half the array, so memory stays bounded.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/**
 * The async iterator behind `Listener.iterate`: a bounded buffer between the connection and a
 * consumer that may be slower, with a fixed overflow policy. Internal to the Listener.
 */
export class NotificationIterator implements AsyncIterableIterator<Notification> {
  private readonly buffer = new Fifo<Notification>();
  private waiter: ((r: IteratorResult<Notification>) => void) | undefined;
  private done = false;
  private failure: ClosedError | undefined;

  constructor(
    private readonly channel: string,
    private readonly bufferSize: number,
    private readonly policy: OverflowPolicy,
    private readonly hooks: { onOverflow: () => void; onClose: () => void },
  ) {}

  /** A notification arrived for this iterator. */
  deliver(n: Notification): void {
    if (this.done) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: n, done: false });
      return;
    }
    if (this.buffer.length < this.bufferSize) {
      this.buffer.push(n);
      return;
    }
    this.hooks.onOverflow();
    if (this.policy === 'drop-oldest') {
      this.buffer.shift();
      this.buffer.push(n);
    } else if (this.policy === 'error') {
      this.failure = new ClosedError(
        `iterate(${JSON.stringify(this.channel)}): the buffer of ${this.bufferSize} notifications overflowed (the consumer is too slow)`,
      );
      this.close();
    }
  }

  /** Ends the iterator (the listener stopped): what is buffered is still yielded. */
  end(): void {
    this.close();
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<Notification>> {
    const n = this.buffer.shift();
    if (n) return Promise.resolve({ value: n, done: false });
    if (this.failure) {
      const f = this.failure;
      this.failure = undefined;
      return Promise.reject(f);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Leaving a `for await` loop lands here: unsubscribe and drop what is buffered. */
  return(): Promise<IteratorResult<Notification>> {
    this.buffer.clear();
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Notification> {
    return this;
  }

  private close(): void {
    if (this.done) return;
    this.done = true;
    this.hooks.onClose();
  }
}
