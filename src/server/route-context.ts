import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import type { ConnectionInput } from '../core/index.js';
import type { ConnectableQueryable } from '../core/index.js';
import type { Metrics } from './metrics.js';

/** What the service runs on: a `pg.Pool` or a `ClusterPool` (anything with these). */
export interface ServicePool extends ConnectableQueryable {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

/**
 * Where the service's dedicated LISTEN connection dials (settings, or a function that dials),
 * not the connection itself (that is the listener's own `ListenerConnection`).
 */
export interface ListenerDialOptions {
  /** Connection settings (a pg.Pool's own). */
  connection?: ConnectionInput;
  /** Or a function that dials a fresh client each time (a ClusterPool's primary). */
  connect?: () => Promise<pg.Client>;
}

/** What every route family receives: the database, the schema, the metrics registry. */
export interface RouteContext {
  /** The service's pool. Owned by the caller of createServer, never closed by the routes. */
  pool: ServicePool;
  /** Schema of the pgcoord tables. */
  schema: string;
  metrics: Metrics;
  /** Where the dedicated LISTEN connection dials (the field keeps its name: RouteContext is public). */
  listenerConnection: ListenerDialOptions;
}

/** A family of routes (one file each): registers its routes, collectors and close hooks. */
export type RouteFamily = (app: FastifyInstance, ctx: RouteContext) => void | Promise<void>;
