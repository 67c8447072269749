// The pgcoord HTTP service: `import { createServer } from 'pgcoord/server'`.
export { createServer, createLogger, REDACT_PATHS } from './server.js';
export type { ServerOptions, PgcoordServer } from './server.js';
export { resolveServerSettings, isLoopback, MIN_TOKEN_LENGTH } from './server-options.js';
export type { ServerSettings, ServerSettingsInput } from './server-options.js';
export { STATUS_BY_CODE, toHttpError, HttpError, errorSchema } from './http-errors.js';
export type { ErrorBody } from './http-errors.js';
export { Metrics } from './metrics.js';
export type { MetricSample, MetricCollector } from './metrics.js';
export { buildOpenApi } from './openapi.js';
export type { RouteDoc, RouteSchema } from './openapi.js';
export type { RouteContext, RouteFamily, ServicePool } from './route-context.js';
export type {
  ConsoleSnapshot,
  ConsoleSample,
  ConsoleListRow,
  ConsoleKeyRow,
  ConsoleWorkerRow,
  ConsoleChanges,
  ConsoleGroupRow,
  ConsoleDeadLetterRow,
  ConsoleLeaseRow,
  ConsoleInstanceRow,
  ConsoleRouteRow,
  LimiterActivity,
  RecordedDecision,
} from './console-types.js';
