import { ClosedError, Lifecycle } from '../core/index.js';
import { Listener, type Notification } from '../listen/index.js';
import type { ListenerDialOptions } from './route-context.js';

type Subscriber = (n: Notification) => void;

/**
 * Fans one Listener (one dedicated connection for the whole service) out to many subscribers:
 * a channel is LISTENed while it has at least one subscriber. 10,000 SSE clients of one channel
 * cost one LISTEN, and a notification is written to each of them from one handler call.
 */
export class ChannelHub {
  private listener: Listener | undefined;
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  /** Per channel: resolves once it is LISTENed (shared by all its subscribers). */
  private readonly ready = new Map<string, Promise<void>>();
  /** Reconnects of the listener since the service started. */
  reconnects = 0;
  /** Notifications delivered to subscribers. */
  delivered = 0;

  /** The listener exists while the hub runs: from the first subscribe to stop(). */
  private readonly lifecycle = new Lifecycle(
    { name: 'channel hub' },
    {
      start: () => {
        this.listener = this.newListener();
      },
      stop: async () => {
        this.subscribers.clear();
        this.ready.clear();
        const l = this.listener;
        this.listener = undefined;
        await l?.stop();
      },
    },
  );

  constructor(
    private readonly dial: ListenerDialOptions,
    private readonly schema: string,
  ) {}

  /** Subscribers right now, over every channel. */
  get subscriberCount(): number {
    let n = 0;
    for (const set of this.subscribers.values()) n += set.size;
    return n;
  }

  /**
   * Adds `fn` to `channel` and resolves once the channel is LISTENed (so a notification sent
   * after this resolves is delivered). Returns the unsubscribe function.
   */
  async subscribe(channel: string, fn: Subscriber): Promise<() => void> {
    await this.lifecycle.start();
    const listener = this.listener;
    // A stop() that began while this subscribe waited.
    if (!listener) throw new ClosedError('the channel hub was stopped');
    let set = this.subscribers.get(channel);
    if (!set) {
      set = new Set();
      this.subscribers.set(channel, set);
      const subs = set;
      listener.handle(channel, (_payload, n) => {
        for (const s of subs) s(n);
        this.delivered += subs.size;
      });
    }
    set.add(fn);
    // Every subscriber of a channel waits on the same readiness check: 10,000 subscribers of one
    // channel cost one LISTEN and one round trip, not 10,000.
    let ready = this.ready.get(channel);
    if (!ready) {
      ready = listener.start().then(() => listener.ready());
      this.ready.set(channel, ready);
      const forget = () => this.ready.delete(channel);
      ready.catch(forget);
    }
    await ready;
    return () => {
      const current = this.subscribers.get(channel);
      if (!current) return;
      current.delete(fn);
      if (current.size === 0) {
        this.subscribers.delete(channel);
        this.ready.delete(channel);
        this.listener?.unhandle(channel);
      }
    };
  }

  /** Stops the listener; subscribers get nothing more. Idempotent. */
  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  private newListener(): Listener {
    const listener = new Listener({
      ...(this.dial.connect
        ? { connect: this.dial.connect }
        : { connection: this.dial.connection }),
      schema: this.schema,
      applicationName: 'pgcoord-serve-listener',
    });
    listener.on('reconnect', () => this.reconnects++);
    listener.on('error', () => undefined);
    return listener;
  }
}
