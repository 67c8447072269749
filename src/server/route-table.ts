/**
 * The methods each registered path pattern answers, so that a request for a known path with
 * another method can be a 405 with an `Allow` header (RFC 9110 section 15.5.6) instead of a 404.
 * Fastify's router says only "no route"; this table matches the raw path against every route
 * pattern (`:param` is one segment, a trailing `*` the rest of the path), as the router does.
 */
export class RouteTable {
  private readonly routes: Array<{ method: string; pattern: RegExp }> = [];

  /** Records one route, as Fastify's `onRoute` hook reports it. */
  add(method: string, url: string): void {
    this.routes.push({ method, pattern: compile(url) });
  }

  /** Methods that some route answers for `path` (raw, without the query), sorted; [] if none. */
  allowed(path: string): string[] {
    const methods = new Set<string>();
    for (const r of this.routes) if (r.pattern.test(path)) methods.add(r.method);
    return [...methods].sort();
  }
}

function compile(url: string): RegExp {
  let source = '';
  for (const part of url.split(/(:[A-Za-z0-9_]+|\*$)/)) {
    if (part === '*') source += '.*';
    else if (part.startsWith(':')) source += '[^/]+';
    else source += part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}
