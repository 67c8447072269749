import type { FastifySchema } from 'fastify';
/**
 * A small OpenAPI 3.1 generator fed by the route schemas themselves (collected with Fastify's
 * onRoute hook), so the document can never drift from what the service validates.
 */

/** What the generator needs to know of one route. */
export interface RouteDoc {
  method: string;
  url: string;
  schema: RouteSchema | undefined;
}

/** The Fastify route schema, plus the documentation keywords we read. */
export interface RouteSchema {
  summary?: string;
  description?: string;
  tags?: string[];
  /** Media types the body may come in; default application/json. */
  consumes?: string[];
  /** Media types of the replies; default application/json. */
  produces?: string[];
  params?: JsonSchema;
  querystring?: JsonSchema;
  headers?: JsonSchema;
  body?: JsonSchema;
  /**
   * A body documented in the OpenAPI document but not validated by Fastify (the handler checks it,
   * to name the field at fault or accept an empty body): an optional request body.
   */
  bodyDoc?: JsonSchema;
  response?: Record<string, JsonSchema>;
  /** Routes open without the bearer token (health checks). */
  public?: boolean;
}

type JsonSchema = Record<string, unknown>;

/** Builds the OpenAPI document of `routes`. */
export function buildOpenApi(
  routes: RouteDoc[],
  info: { title: string; version: string; secured: boolean },
): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    if (r.method === 'HEAD' || r.schema === undefined) continue;
    const s = r.schema;
    const { path, wildcard } = toOpenApiPath(r.url);
    const parameters: unknown[] = [];
    const add = (where: string, schema: JsonSchema | undefined) => {
      const props = (schema?.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((schema?.required as string[] | undefined) ?? []);
      for (const [name, p] of Object.entries(props)) {
        const pname = where === 'path' && name === '*' ? wildcard : name;
        parameters.push({
          name: pname,
          in: where,
          required: where === 'path' || required.has(name),
          ...(typeof p.description === 'string' ? { description: p.description } : {}),
          schema: stripDoc(p),
        });
      }
    };
    add('path', s.params);
    add('query', s.querystring);
    add('header', s.headers);
    const op: Record<string, unknown> = {
      operationId: `${r.method.toLowerCase()}${path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      ...(s.summary ? { summary: s.summary } : {}),
      ...(s.description ? { description: s.description } : {}),
      ...(s.tags ? { tags: s.tags } : {}),
      ...(parameters.length ? { parameters } : {}),
    };
    const body = s.body ?? s.bodyDoc;
    if (body) {
      const types = s.consumes ?? ['application/json'];
      op.requestBody = {
        required: s.body !== undefined,
        content: Object.fromEntries(types.map((t) => [t, { schema: body }])),
      };
    }
    const responses: Record<string, unknown> = {};
    for (const [status, schema] of Object.entries(s.response ?? {})) {
      const types = s.produces ?? ['application/json'];
      const description =
        typeof schema.description === 'string' ? schema.description : `HTTP ${status}`;
      responses[status] = {
        description,
        content: Object.fromEntries(types.map((t) => [t, { schema: stripDoc(schema) }])),
      };
    }
    if (Object.keys(responses).length === 0) responses.default = { description: 'reply' };
    op.responses = responses;
    if (info.secured && !s.public) op.security = [{ bearer: [] }];
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: { title: info.title, version: info.version },
    components: info.secured
      ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } }
      : {},
    paths,
  };
}

/** `/lists/:list/items/*` -> `/lists/{list}/items/{item}` (a wildcard becomes `{item}` or `{path}`). */
function toOpenApiPath(url: string): { path: string; wildcard: string } {
  const wildcard = /\/items\/\*$|\/lists\/:list\/\*$/.test(url) ? 'item' : 'path';
  const path = url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, `{${wildcard}}`);
  return { path, wildcard };
}

function stripDoc(schema: JsonSchema): JsonSchema {
  const { description: _d, ...rest } = schema;
  return rest;
}

/**
 * Types a route schema with our documentation keywords for Fastify (which validates only
 * params/querystring/headers/body and serializes responses; the rest is for the document).
 */
export function routeSchema(schema: RouteSchema): FastifySchema {
  return schema as FastifySchema;
}
