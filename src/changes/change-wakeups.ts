import { createHash } from 'node:crypto';
import type { Listener } from '../listen/index.js';

/** Wake-up channel of a pgcoord schema (a hash keeps it within 63 bytes). */
export function wakeChannel(schema: string): string {
  return `pgcoord_changes_${createHash('sha1').update(schema).digest('hex').slice(0, 16)}`;
}

// A Listener has one handler per channel: the consumers of a process sharing one listener
// share that handler.
const wakeups = new WeakMap<Listener, Map<string, Set<() => void>>>();

export function subscribeWakeups(listener: Listener, channel: string, fn: () => void): () => void {
  let byChannel = wakeups.get(listener);
  if (!byChannel) {
    byChannel = new Map();
    wakeups.set(listener, byChannel);
  }
  let fns = byChannel.get(channel);
  if (!fns) {
    const set = new Set<() => void>();
    fns = set;
    byChannel.set(channel, set);
    const wake = () => {
      for (const f of set) f();
    };
    // The backlog runs after every (re)connect: anything announced meanwhile was missed.
    listener.handle(channel, wake, { backlog: wake });
  }
  fns.add(fn);
  const map = byChannel;
  const set = fns;
  return () => {
    set.delete(fn);
    if (set.size === 0 && map.get(channel) === set) {
      map.delete(channel);
      listener.unhandle(channel);
    }
  };
}
