// Wake-ups of workers that share one Listener. A Listener keeps one handler per channel, and
// every worker of a list listens on the same channel: a second worker's handle() would replace
// the first one's, and the first one's stop() would UNLISTEN the channel under the second. One
// handler per (listener, channel) fans each notification (and each backlog run after a
// reconnect) out to every worker subscribed, and is removed with the last of them.
import type { Listener } from '../listen/index.js';

const fanouts = new WeakMap<Listener, Map<string, Set<() => void>>>();

/** Calls `wake` on every notification of `channel` (and after each re-LISTEN); returns the undo. */
export function subscribeWake(listener: Listener, channel: string, wake: () => void): () => void {
  let channels = fanouts.get(listener);
  if (!channels) {
    channels = new Map();
    fanouts.set(listener, channels);
  }
  let wakes = channels.get(channel);
  if (!wakes) {
    const subscribers = new Set<() => void>();
    wakes = subscribers;
    channels.set(channel, subscribers);
    const fire = () => {
      for (const w of subscribers) w();
    };
    listener.handle(channel, fire, { backlog: fire });
  }
  wakes.add(wake);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    wakes.delete(wake);
    if (wakes.size === 0 && channels.get(channel) === wakes) {
      channels.delete(channel);
      listener.unhandle(channel);
    }
  };
}
