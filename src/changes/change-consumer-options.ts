import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { checkSchemaName, DEFAULT_SCHEMA, ValidationError } from '../core/index.js';
import { checkFunction, checkOneOf, checkOptions, checkText, frozen } from '../core/index.js';
import { describe, optionalInt, resolveLogger } from '../core/index.js';
import type { LogEntry, Logger, MessageFirstLogger } from '../core/index.js';
import type { Listener } from '../listen/index.js';
import type { ChangeHandler } from './change.js';
import {
  CHANGE_GROUP_MODES,
  DEFAULT_PARTITIONS,
  MAX_GROUP_BYTES,
  MAX_PARTITIONS,
  START_FROM,
  type ChangeGroupMode,
  type StartFrom,
} from './change-capture.js';
import { DEFAULT_MAX_RETENTION_MS, MAX_RETENTION_MS } from './change-retention.js';

/** Default of {@link ConsumeOptions.concurrency}. */
export const DEFAULT_CONSUMER_CONCURRENCY = 1;
/** Default of {@link ConsumeOptions.batchSize}. */
export const DEFAULT_CHANGE_BATCH_SIZE = 500;
/** Default of {@link ConsumeOptions.maxAttempts}. */
export const DEFAULT_CHANGE_MAX_ATTEMPTS = 5;
/** Default of {@link ConsumeOptions.retryBaseMs}. */
export const DEFAULT_CHANGE_RETRY_BASE_MS = 200;
/** Default of {@link ConsumeOptions.retryMaxMs}. */
export const DEFAULT_CHANGE_RETRY_MAX_MS = 30_000;
/** Default of {@link ConsumeOptions.leaseMs}. */
export const DEFAULT_CHANGE_LEASE_MS = 15_000;
/** Default of {@link ConsumeOptions.pollIntervalMs}. */
export const DEFAULT_CHANGE_POLL_INTERVAL_MS = 50;
/** Default of {@link ConsumeOptions.fullPollIntervalMs}. */
export const DEFAULT_CHANGE_FULL_POLL_INTERVAL_MS = 1_000;
/** Default of {@link ConsumeOptions.pruneIntervalMs}. */
export const DEFAULT_CHANGE_PRUNE_INTERVAL_MS = 10_000;
/** Default of {@link ConsumeOptions.lagWarning}. */
export const DEFAULT_CHANGE_LAG_WARNING = 100_000;

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Options of {@link ChangeConsumer} and `consume()`. */
export interface ConsumeOptions {
  /** Consumer group name: each group sees every change once. At most 200 bytes. */
  group: string;
  /** Receives each batch in the transaction the group's position commits in. */
  handler: ChangeHandler;
  /**
   * `ordered` (default): one active consumer per group, changes in id order (per row, commit
   * order). `parallel`: `partitions` lanes shared by many consumers, order kept per primary key.
   */
  mode?: ChangeGroupMode;
  /** Lanes of a parallel group, fixed when the group is created. Default 8 (1 .. 1024); ordered: 1. */
  partitions?: number;
  /** Lanes this process works at once (parallel). Default 1 (1 .. 64). Needs that many pool connections. */
  concurrency?: number;
  /** Most changes per handler call. Default 500 (1 .. 10,000). */
  batchSize?: number;
  /** Where a NEW group starts: `now` (default; changes written after it exists) or `beginning` (everything retained). */
  startFrom?: StartFrom;
  /** Tries per batch before the failing change is isolated and dead-lettered. Default 5 (1 .. 1000). */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt, jittered. Default 200 (1 .. 1 hour). Unit: ms. */
  retryBaseMs?: number;
  /** Longest retry delay. Default 30,000 (1 .. 1 day). Unit: ms. */
  retryMaxMs?: number;
  /** Ordered mode: how long the active consumer keeps the group after its last batch. Default 15,000 (100 .. 1 day). Unit: ms. */
  leaseMs?: number;
  /** How often the cheap check for new changes runs (reads the id sequence). Default 50 (5 .. 60,000). Unit: ms. */
  pollIntervalMs?: number;
  /** Full look for work even if no new id was allocated (late commits). Default 1,000 (10 .. 1 hour). Unit: ms. */
  fullPollIntervalMs?: number;
  /** How often this consumer prunes consumed changes and checks lag; 0 turns it off. Default 10,000 (.. 1 day). Unit: ms. */
  pruneIntervalMs?: number;
  /** Retention bound for dead groups, see ChangeCapture.prune. Default 7 days (.. 10 years). Unit: ms. */
  maxRetentionMs?: number;
  /** Emit `lag` (and log a warning) when a group lags by more changes than this. Default 100,000. */
  lagWarning?: number;
  /** This consumer's name in the group row. Default `<host>:<pid>:<random>`. At most 200 bytes. */
  consumerId?: string;
  /**
   * A started {@link Listener} to share wake-ups between processes: a consumer whose poll sees new
   * ids sends one empty NOTIFY (at most one per `pollIntervalMs` per process, never from the
   * writers, so commits are not serialized) and every other consumer on the channel wakes at once
   * instead of at its next poll. Only a hint: polling goes on. Default: none.
   */
  listener?: Listener;
  /** pgcoord's schema. Default `pgcoord`. */
  schema?: string;
  /**
   * Receives warnings (lag, overrun) and errors nobody listens for: an object whose methods take
   * `(message, fields)`, as this option always did; a pino logger (or Fastify's `request.log`),
   * recognised by its serializers and called as `(fields, message)`; or a function of a log
   * entry `{ level, message, ...fields }`. Default: the console (warnings and errors only).
   */
  // Typed without the pino-first Logger in the union: a union of both method shapes would leave
  // `{ warn: (m) => ... }` without a contextual type (an implicit any under strict).
  logger?: MessageFirstLogger | ((entry: LogEntry) => void);
}

/**
 * {@link ConsumeOptions} with every default applied, checked and frozen: each field means what
 * the option of the same name says; `logger` is resolved to the one Logger shape.
 */
export interface ResolvedChangeConsumerOptions {
  readonly group: string;
  readonly handler: ChangeHandler;
  readonly mode: ChangeGroupMode;
  readonly partitions: number;
  readonly concurrency: number;
  readonly batchSize: number;
  readonly startFrom: StartFrom;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly leaseMs: number;
  readonly pollIntervalMs: number;
  readonly fullPollIntervalMs: number;
  readonly pruneIntervalMs: number;
  readonly maxRetentionMs: number;
  readonly lagWarning: number;
  readonly consumerId: string;
  readonly listener: Listener | undefined;
  readonly schema: string;
  readonly logger: Logger;
}

/** The consumer's default logger: warnings and errors on the console, as it always logged. */
const consoleLogger: Logger = Object.freeze({
  debug: () => undefined,
  info: () => undefined,
  warn: (obj: object, msg?: string) => console.warn(`pgcoord: ${msg ?? ''}`, obj),
  error: (obj: object, msg?: string) => console.error(`pgcoord: ${msg ?? ''}`, obj),
});

/** Checks {@link ConsumeOptions} before any SQL and applies the defaults. */
export function resolveChangeConsumerOptions(
  options: ConsumeOptions,
): ResolvedChangeConsumerOptions {
  const o = checkOptions('options', options) as ConsumeOptions;
  const group = checkText('options.group', o.group, { maxBytes: MAX_GROUP_BYTES });
  const handler = checkFunction<ChangeHandler>('options.handler', o.handler);
  const mode = checkOneOf('options.mode', o.mode, CHANGE_GROUP_MODES, 'ordered');
  const startFrom = checkOneOf('options.startFrom', o.startFrom, START_FROM, 'now');
  let partitions = 1;
  if (mode === 'parallel') {
    partitions = optionalInt(
      'options.partitions',
      o.partitions,
      { min: 1, max: MAX_PARTITIONS },
      DEFAULT_PARTITIONS,
    );
  } else if (o.partitions !== undefined && o.partitions !== 1) {
    throw new ValidationError('options.partitions', 'must be 1 (or unset) in ordered mode');
  }
  const int = (name: keyof ConsumeOptions, min: number, max: number, fallback: number) =>
    optionalInt(`options.${name}`, o[name], { min, max }, fallback);
  return frozen({
    group,
    handler,
    mode,
    partitions,
    concurrency: int('concurrency', 1, 64, DEFAULT_CONSUMER_CONCURRENCY),
    batchSize: int('batchSize', 1, 10_000, DEFAULT_CHANGE_BATCH_SIZE),
    startFrom,
    maxAttempts: int('maxAttempts', 1, 1000, DEFAULT_CHANGE_MAX_ATTEMPTS),
    retryBaseMs: int('retryBaseMs', 1, HOUR_MS, DEFAULT_CHANGE_RETRY_BASE_MS),
    retryMaxMs: int('retryMaxMs', 1, DAY_MS, DEFAULT_CHANGE_RETRY_MAX_MS),
    leaseMs: int('leaseMs', 100, DAY_MS, DEFAULT_CHANGE_LEASE_MS),
    pollIntervalMs: int('pollIntervalMs', 5, 60_000, DEFAULT_CHANGE_POLL_INTERVAL_MS),
    fullPollIntervalMs: int(
      'fullPollIntervalMs',
      10,
      HOUR_MS,
      DEFAULT_CHANGE_FULL_POLL_INTERVAL_MS,
    ),
    pruneIntervalMs: int('pruneIntervalMs', 0, DAY_MS, DEFAULT_CHANGE_PRUNE_INTERVAL_MS),
    maxRetentionMs: int('maxRetentionMs', 1, MAX_RETENTION_MS, DEFAULT_MAX_RETENTION_MS),
    lagWarning: int('lagWarning', 1, Number.MAX_SAFE_INTEGER, DEFAULT_CHANGE_LAG_WARNING),
    consumerId:
      o.consumerId === undefined
        ? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
        : checkText('options.consumerId', o.consumerId, { maxBytes: MAX_GROUP_BYTES }),
    schema: checkSchemaName(o.schema ?? DEFAULT_SCHEMA),
    listener: checkListener(o.listener),
    logger: resolveLogger(o.logger, { objectShape: 'message-first', fallback: consoleLogger }),
  });
}

function checkListener(value: unknown): Listener | undefined {
  if (value === undefined) return undefined;
  const l = value as Partial<Listener>;
  if (typeof l.handle !== 'function' || typeof l.unhandle !== 'function') {
    throw new ValidationError('options.listener', `must be a Listener, got ${describe(value)}`);
  }
  return value as Listener;
}
