import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import type { ConnectionInput } from '../db/connection.js';
import type { Metrics } from './metrics.js';

/** What every route family receives: the database, the schema, the metrics registry. */
export interface RouteContext {
  /** The service's pool. Owned by the caller of createServer, never closed by the routes. */
  pool: pg.Pool;
  /** Schema of the pgcoord tables. */
  schema: string;
  metrics: Metrics;
  /** Where dedicated connections (the LISTEN connection) dial: the pool's settings. */
  connection: ConnectionInput;
}

/** A family of routes (one file each): registers its routes, collectors and close hooks. */
export type RouteFamily = (app: FastifyInstance, ctx: RouteContext) => void | Promise<void>;
