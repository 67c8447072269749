// Wake-ups shared by everything of one process that listens on one channel through one Listener.
// A Listener keeps one handler per channel: a second handle() would replace the first one's, and
// the first one's unhandle() would UNLISTEN the channel under the second. One handler per
// (listener, channel) fans each notification, and each backlog run after a (re)connect, out to
// every subscriber, and goes away with the last of them. Used by workers and change consumers.
import type { Listener } from './listener.js';

const fanouts = new WeakMap<Listener, Map<string, Set<() => void>>>();

/** Calls `wake` on every notification of `channel` and after each re-LISTEN; returns the undo. */
export function subscribeWakeups(
  listener: Listener,
  channel: string,
  wake: () => void,
): () => void {
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
    // The backlog runs after every (re)connect: anything announced meanwhile was missed.
    listener.handle(channel, fire, { backlog: fire });
  }
  wakes.add(wake);
  const map = channels;
  const set = wakes;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    set.delete(wake);
    if (set.size === 0 && map.get(channel) === set) {
      map.delete(channel);
      listener.unhandle(channel);
    }
  };
}
