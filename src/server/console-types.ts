/**
 * What `GET /v1/console/events` sends: the page (console/) imports these types, so the server
 * and the page cannot drift. Times are ISO strings; database times come from the server clock.
 */

/** One attempt list's counts (the library's `AttemptList.stats`). */
export interface ConsoleListRow {
  list: string;
  total: number;
  claimable: number;
  leased: number;
  delayed: number;
  dead: number;
  /**
   * Per-key breakdown and limits, when the list has keys (filled once the lists block has them;
   * absent otherwise, and the page shows no key table).
   */
  keys?: ConsoleKeyRow[];
}

/** One key of a list: its counts and its limit, as far as the service reports them. */
export interface ConsoleKeyRow {
  key: string;
  total?: number;
  claimable?: number;
  leased?: number;
  /** The key's limit, as the service describes it (e.g. "5 in flight"). */
  limit?: string | number;
}

/** A live worker, as `GET /v1/workers` reports it. */
export interface ConsoleWorkerRow {
  id: string;
  list: string;
  host: string;
  pid: number;
  concurrency: number;
  inFlight: number;
  startedAt: string;
  heartbeatAt: string;
}

/** A consumer group lane with its position. */
export interface ConsoleGroupRow {
  group: string;
  mode: string;
  partition: number;
  partitions: number;
  lowWater: string;
  lag: number;
  owner: string | null;
  leaseExpiresAt: string | null;
  deliveredCount: number;
  overrunCount: number;
  attempts: number;
  lastError: string | null;
}

/** A dead letter of a group, with a short description of its change. */
export interface ConsoleDeadLetterRow {
  id: string;
  changeId: string;
  /** `schema.table op`, from the change. */
  summary: string;
  attempts: number;
  lastError: string | null;
  state: 'dead' | 'replay';
  failedAt: string;
}

export interface ConsoleChanges {
  tables: Array<{ schema: string; name: string; operations: string[] }>;
  groups: ConsoleGroupRow[];
  /** The first dead letters of each group that has any, by group name. */
  deadLetters: Record<string, ConsoleDeadLetterRow[]>;
}

/** A held lease (leader elections are leases named after the election). */
export interface ConsoleLeaseRow {
  name: string;
  owner: string;
  token: string;
  expiresAt: string;
  /** Time it has left when the snapshot was taken, ms (server clock). */
  remainingMs: number;
}

/** One instance of the cluster pool. */
export interface ConsoleInstanceRow {
  key: string;
  role: string;
  health: string;
  readOnly: boolean;
  lagBytes: number | null;
  lagMs: number | null;
  failures: number;
  connections: { total: number; idle: number; inUse: number; waiting: number; max: number };
}

/** The service's own traffic on one route over the last interval. */
export interface ConsoleRouteRow {
  method: string;
  route: string;
  perSecond: number;
  /** 95th percentile latency over the interval (the histogram bucket it falls in), ms; null when idle. */
  p95Ms: number | null;
  /** Requests answered 5xx over the interval, per second. */
  serverErrorsPerSecond: number;
}

/** One point of the sparklines. */
export interface ConsoleSample {
  /** Epoch ms (the service's clock). */
  at: number;
  /** Per list: its size, items gone per second (net of inserts), new dead per second. */
  lists: Record<string, { size: number; drainedPerSecond: number; newDeadPerSecond: number }>;
  /** Per consumer group: its lag (summed over its lanes). */
  lag: Record<string, number>;
  requestsPerSecond: number;
  serverErrorsPerSecond: number;
  p95Ms: number | null;
}

/** One snapshot: computed once per interval and sent to every open page. */
export interface ConsoleSnapshot {
  at: string;
  intervalMs: number;
  /** The service refuses writes (`--read-only`): the page hides its write buttons. */
  readOnly: boolean;
  /** The first 50 lists by name; null when they could not be read (see `problems`). */
  lists: ConsoleListRow[] | null;
  /** Live workers; null when this service has no worker registry (or see `problems`). */
  workers: ConsoleWorkerRow[] | null;
  changes: ConsoleChanges | null;
  leases: ConsoleLeaseRow[] | null;
  limits: LimiterActivity[];
  /** Instances of the cluster pool; null when the service runs on one server. */
  cluster: ConsoleInstanceRow[] | null;
  service: { routes: ConsoleRouteRow[] };
  sample: ConsoleSample;
  /** Sections that failed this time, with the reason. */
  problems: Record<string, string>;
}

/** One rate-limit decision the service made, as the console lists it. */
export interface RecordedDecision {
  /** When it was made (the service's clock, ISO; for display only). */
  at: string;
  key: string;
  allowed: boolean;
  remaining: number;
}

/** Decisions of one limiter name since the service started. */
export interface LimiterActivity {
  name: string;
  allowed: number;
  denied: number;
  /** The newest decisions, newest last. */
  recent: RecordedDecision[];
}
