import { ClosedError, coerceError, ValidationError, type PgcoordError } from './errors.js';
import { logError, type Logger } from './logger.js';
import { describe } from './validate.js';

/**
 * The one lifecycle of everything that runs in the background (River's startstop contract):
 * `start()` and `stop()` are idempotent, `stop()` before `start()` is fine, `stop()` waits for the
 * work in flight, and `await using` stops it at the end of a scope.
 */
export interface Service {
  /** Starts the background work; resolves once it runs. Idempotent. */
  start(): Promise<void>;
  /** Stops it and waits for the work in flight. Idempotent; fine before start(). */
  stop(): Promise<void>;
  /** Same as {@link stop}: `await using service = ...` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Where a {@link Lifecycle} stands. */
export type ServiceState = 'stopped' | 'starting' | 'running' | 'stopping';

/** Default wait of {@link TestSignal.wait}, in ms. */
export const DEFAULT_SIGNAL_TIMEOUT_MS = 10_000;

/**
 * A point in a background object's life that a test can wait for (River's testsignal): the
 * object calls `signal(value)`, the test awaits `wait()` and gets the values in order, so it
 * asserts the order of events instead of elapsed time. Values no test waited for are kept up to
 * `capacity` (the oldest dropped), so an object in production pays one array push per signal.
 *
 * @example
 * await service.start();
 * await service.signals.started.wait();
 */
export class TestSignal<T = void> {
  /** Name shown when a wait times out. */
  readonly name: string;
  private readonly capacity: number;
  private readonly values: T[] = [];
  private readonly waiters: Array<(value: T) => void> = [];
  private emitted = 0;

  constructor(name: string, capacity = 64) {
    this.name = name;
    this.capacity = capacity;
  }

  /** How many times the signal fired since it was made. */
  get count(): number {
    return this.emitted;
  }

  /** Records that the event happened. Never blocks, never throws. */
  signal(value: T): void {
    this.emitted++;
    const waiter = this.waiters.shift();
    if (waiter) return waiter(value);
    this.values.push(value);
    if (this.values.length > this.capacity) this.values.shift();
  }

  /**
   * The next value nobody has waited for yet (one already signalled, or the next to come).
   * Rejects after `timeoutMs` (default 10 s) with an error naming the signal.
   */
  wait(options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.values.length > 0) return Promise.resolve(this.values.shift() as T);
    const timeoutMs = options.timeoutMs ?? DEFAULT_SIGNAL_TIMEOUT_MS;
    return new Promise<T>((resolve, reject) => {
      const waiter = (value: T) => {
        clearTimeout(timer);
        resolve(value);
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for test signal "${this.name}"`));
      }, timeoutMs);
      // A forgotten wait must not hold the process open.
      timer.unref();
      this.waiters.push(waiter);
    });
  }

  /** Drops the values nobody waited for. */
  clear(): void {
    this.values.length = 0;
  }
}

/** What a background object plugs into a {@link Lifecycle}. */
export interface LifecycleHooks {
  /**
   * Begins the work (timers, loops, connections) and resolves once it runs. `signal` aborts when
   * stop() is called, even during this start: return promptly then. When it throws, it must
   * leave nothing running; the lifecycle is stopped and can be started again.
   */
  start(signal: AbortSignal): Promise<void> | void;
  /** Ends the work: clears timers, ends loops, and waits for the work in flight. */
  stop(): Promise<void> | void;
}

/** Options of {@link Lifecycle}. */
export interface LifecycleOptions {
  /** Name in error messages and test signals, e.g. `kv reaper`. */
  name: string;
  /**
   * Whether start() after a stop() starts again (default true, as KvStore, LeaderElection and
   * Listener always allowed). False for objects whose stop is final (a pool's end): start()
   * after it rejects with a {@link ClosedError}.
   */
  restartable?: boolean;
}

/** The test signals every {@link Lifecycle} has. */
export interface LifecycleSignals {
  /** The start hook resolved: the object runs. */
  readonly started: TestSignal<void>;
  /** A stop finished: the stop hook resolved (or start failed while stopping). */
  readonly stopped: TestSignal<void>;
}

/**
 * The one lifecycle implementation: a background object owns one and forwards `start()`,
 * `stop()` and `[Symbol.asyncDispose]()` to it, and puts its own work in the hooks.
 *
 * - start() while starting returns the same promise; while running resolves at once; while
 *   stopping begins after the stop (it is not swallowed by it).
 * - stop() before start() resolves at once; while starting, it aborts the start's signal, waits
 *   for the start to settle, then runs the stop hook; concurrent stops share one promise.
 * - start() after stop() starts again unless `restartable` is false.
 *
 * @example
 * class Reaper implements Service {
 *   private readonly lifecycle = new Lifecycle({ name: 'reaper' }, {
 *     start: () => { this.timer = setInterval(...) },
 *     stop: async () => { clearInterval(this.timer); await this.inFlight; },
 *   });
 *   readonly signals = this.lifecycle.signals;
 *   start() { return this.lifecycle.start(); }
 *   stop() { return this.lifecycle.stop(); }
 *   [Symbol.asyncDispose]() { return this.lifecycle.stop(); }
 * }
 */
export class Lifecycle implements Service {
  /** Name in messages. */
  readonly name: string;
  /** Test signals: `started`, `stopped`. */
  readonly signals: LifecycleSignals;
  private readonly hooks: LifecycleHooks;
  private readonly restartable: boolean;
  private current: ServiceState = 'stopped';
  private controller: AbortController | undefined;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private stoppedOnce = false;

  constructor(options: LifecycleOptions, hooks: LifecycleHooks) {
    if (typeof hooks?.start !== 'function' || typeof hooks.stop !== 'function') {
      throw new ValidationError(
        'hooks',
        `must have start and stop functions, got ${describe(hooks)}`,
      );
    }
    this.name = options.name;
    this.restartable = options.restartable ?? true;
    this.hooks = hooks;
    this.signals = {
      started: new TestSignal(`${options.name}: started`),
      stopped: new TestSignal(`${options.name}: stopped`),
    };
  }

  /** Where it stands now. */
  get state(): ServiceState {
    return this.current;
  }

  /** Whether it is starting or running (not stopping or stopped). */
  get active(): boolean {
    return this.current === 'starting' || this.current === 'running';
  }

  /**
   * Aborted when stop() begins: pass it to waits (a backoff sleep, a dial) so they end at once.
   * An aborted signal before the first start.
   */
  get signal(): AbortSignal {
    return this.controller?.signal ?? ABORTED;
  }

  /** Starts (see the class notes for every state). */
  start(): Promise<void> {
    switch (this.current) {
      case 'running':
        return Promise.resolve();
      case 'starting':
        return this.starting as Promise<void>;
      case 'stopping':
        return (this.stopping as Promise<void>).catch(() => undefined).then(() => this.start());
      default:
        break;
    }
    if (this.stoppedOnce && !this.restartable) {
      return Promise.reject(new ClosedError(`${this.name} was stopped and cannot start again`));
    }
    const controller = new AbortController();
    this.controller = controller;
    this.current = 'starting';
    this.starting = (async () => {
      try {
        await this.hooks.start(controller.signal);
      } catch (err) {
        // A stop() waiting on this start finishes the transition; otherwise we do.
        if (this.current === 'starting') this.current = 'stopped';
        controller.abort();
        throw err;
      }
      if (this.current === 'starting') {
        this.current = 'running';
        this.signals.started.signal();
      }
    })();
    return this.starting;
  }

  /** Stops and waits for the work in flight (see the class notes for every state). */
  stop(): Promise<void> {
    if (this.current === 'stopped') return Promise.resolve();
    if (this.current === 'stopping') return this.stopping as Promise<void>;
    const starting = this.current === 'starting' ? this.starting : undefined;
    this.current = 'stopping';
    this.controller?.abort();
    this.stopping = (async () => {
      try {
        const started = starting
          ? await starting.then(
              () => true,
              () => false,
            )
          : true;
        if (started) await this.hooks.stop();
      } finally {
        this.current = 'stopped';
        this.stoppedOnce = true;
        this.stopping = undefined;
        this.signals.stopped.signal();
      }
    })();
    return this.stopping;
  }

  /** Same as {@link stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

const ABORTED = AbortSignal.abort();

/** An object that may emit `'error'` (a Node.js EventEmitter, typed or not). */
export interface ErrorEmitter {
  listenerCount(eventName: 'error'): number;
  emit(eventName: 'error', error: PgcoordError): boolean;
}

/**
 * The one "emit `'error'` only when someone listens, else log it": an EventEmitter with no
 * `'error'` listener would throw the error (and end the process from a timer), so a background
 * failure goes to the listeners when there are some, to `logger` otherwise. Returns the error as
 * a {@link PgcoordError}. A listener that throws is logged, not rethrown into the background loop.
 */
export function reportError(
  emitter: ErrorEmitter,
  logger: Logger,
  err: unknown,
  message: string,
  context: object = {},
): PgcoordError {
  const e = coerceError(err);
  if (emitter.listenerCount('error') === 0) {
    logError(logger, e, message, context);
    return e;
  }
  try {
    emitter.emit('error', e);
  } catch (listenerErr) {
    logError(logger, listenerErr, `an 'error' listener threw while handling: ${message}`, context);
  }
  return e;
}
