import type { Notification } from './listener-connection.js';
import type { NotificationHandler } from './listener-options.js';
import { Fifo } from './notification-iterator.js';

/** One reader of a channel: its handler or one of its iterators. */
export interface Subscription {
  deliver(n: Notification): void;
  /** Called on (re)connect once LISTENed. */
  onListening?(): void;
}

/** The handler of a channel. */
export interface HandlerSub extends Subscription {
  handler: NotificationHandler;
  backlog: (() => void | Promise<void>) | undefined;
  concurrency: number;
}

/** A channel's readers and its queue of work. */
export interface ChannelState {
  name: string;
  handler: HandlerSub | undefined;
  iterators: Set<Subscription>;
  /** Jobs waiting to run, in arrival order. */
  queue: Fifo<() => void | Promise<void>>;
  running: number;
  concurrency: number;
}

/** Reports a handler or backlog failure (the Listener logs it and emits `handler:error`). */
export type HandlerErrorReporter = (
  channel: string,
  error: unknown,
  notification: Notification | undefined,
  kind: 'handler' | 'backlog',
) => void;

/** A channel with no reader yet. */
export function newChannelState(name: string): ChannelState {
  return {
    name,
    handler: undefined,
    iterators: new Set(),
    queue: new Fifo(),
    running: 0,
    concurrency: 1,
  };
}

/**
 * The Listener's delivery side: runs each channel's handlers and backlogs in arrival order, as
 * many at a time as the channel's concurrency allows, and counts what runs across channels so
 * stop() can wait for it. Knows nothing of the connection.
 */
export class Delivery {
  /** Handlers and backlogs running now, across channels (released ones included). */
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly reportHandlerError: HandlerErrorReporter) {}

  /** Queues work for a channel and runs what its concurrency allows. */
  enqueue(state: ChannelState, job: () => void | Promise<void>): void {
    state.queue.push(job);
    this.pump(state);
  }

  /** Runs `sub`'s handler on `n` unless the channel's handler changed since it was queued. */
  runHandler(state: ChannelState, sub: HandlerSub, n: Notification): void | Promise<void> {
    // Unhandled (or replaced) after it was queued: drop it.
    if (state.handler !== sub) return;
    let result: void | Promise<void>;
    try {
      result = sub.handler(n.payload, n);
    } catch (error) {
      this.reportHandlerError(state.name, error, n, 'handler');
      return;
    }
    if (result && typeof (result as Promise<void>).then === 'function') {
      return Promise.resolve(result).then(undefined, (error: unknown) =>
        this.reportHandlerError(state.name, error, n, 'handler'),
      );
    }
  }

  /** Runs `sub`'s backlog hook unless the channel's handler changed since it was queued. */
  async runBacklog(state: ChannelState, sub: HandlerSub): Promise<void> {
    if (state.handler !== sub || !sub.backlog) return;
    try {
      await sub.backlog();
    } catch (error) {
      this.reportHandlerError(state.name, error, undefined, 'backlog');
    }
  }

  /** Resolves once no handler or backlog runs. */
  drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(state: ChannelState): void {
    while (state.running < state.concurrency && state.queue.length > 0) {
      const job = state.queue.shift()!;
      const pending = job();
      // A synchronous handler costs no promise: the hot path at thousands per second.
      if (pending === undefined) continue;
      state.running++;
      this.inFlight++;
      void pending.finally(() => {
        state.running--;
        this.inFlight--;
        this.pump(state);
        this.checkIdle();
      });
    }
  }

  private checkIdle(): void {
    if (this.inFlight > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
