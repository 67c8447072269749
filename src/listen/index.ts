// The listen block's public face: LISTEN/NOTIFY: the listener, notify and the notification iterator.
// Other blocks, the server and the CLI import this file, never the files beside it.
export { Listener } from './listener.js';
export type {
  HandleOptions,
  IterateOptions,
  ListenerEvents,
  ListenerLogger,
  ListenerOptions,
  Notification,
  NotificationHandler,
  OverflowPolicy,
} from './listener.js';
export {
  MAX_CHANNEL_BYTES,
  MAX_PAYLOAD_BYTES,
  Notifier,
  notify,
  purgeListenerPayloads,
} from './notify.js';
export type { JsonValue, NotifierOptions, NotifyOptions } from './notify.js';
export { subscribeWakeups } from './shared-wakeups.js';
