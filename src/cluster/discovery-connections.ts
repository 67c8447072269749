import pg from 'pg';
import { ClosedError, coerceError, isConnectionSqlState } from '../core/index.js';
import { instanceKey, type HostPort } from './topology.js';

/**
 * The discovery side of the cluster pool: one service connection per instance, outside the
 * instance pools (as picodata-go keeps a separate connection for its poller), so probes never
 * wait behind application queries and never take their slots. Opened on first use, dropped on
 * any connection error and reopened at the next probe; named `pgcoord_discovery`.
 */
export class DiscoveryConnections {
  private readonly clients = new Map<string, Promise<pg.Client>>();
  private closed = false;

  constructor(
    private readonly settings: {
      clientConfig(target: HostPort, overrides?: Record<string, string>): pg.ClientConfig;
      timeoutMs: number;
    },
  ) {}

  /** Runs a statement on one instance's service connection. */
  async query<R extends pg.QueryResultRow>(
    target: HostPort,
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    if (this.closed) throw new ClosedError('the cluster pool was ended');
    const client = await this.client(target);
    try {
      return await client.query<R>(text, values);
    } catch (err) {
      // A broken connection (no SQLSTATE, or a connection-class one) is reopened next time.
      const code = (err as { code?: string }).code;
      if (code === undefined || isConnectionSqlState(code) || !/^[0-9A-Z]{5}$/.test(code)) {
        await this.close(instanceKey(target));
      }
      throw err;
    }
  }

  /**
   * Runs a statement on the first of `targets` that answers. A server's answer (a SQLSTATE) says
   * more than a refused connection elsewhere, so it is what is thrown when none succeeds.
   */
  async queryAny<R extends pg.QueryResultRow>(
    targets: readonly HostPort[],
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const tried = new Set<string>();
    let lastError: unknown = new Error('no instance to query');
    let serverError: unknown;
    for (const t of targets) {
      const key = instanceKey(t);
      if (tried.has(key)) continue;
      tried.add(key);
      try {
        return await this.query<R>(t, text, values);
      } catch (err) {
        lastError = err;
        if (serverError === undefined && coerceError(err).code === 'PGCOORD_DATABASE') {
          serverError = err;
        }
      }
    }
    throw serverError ?? lastError;
  }

  /** Closes the service connection of one instance (it left the topology). */
  async close(key: string): Promise<void> {
    const p = this.clients.get(key);
    if (!p) return;
    this.clients.delete(key);
    const client = await p.catch(() => undefined);
    await client?.end().catch(() => undefined);
  }

  /** Closes every service connection; later queries fail with ClosedError. */
  async closeAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.clients.keys()].map((k) => this.close(k)));
  }

  private client(target: HostPort): Promise<pg.Client> {
    const key = instanceKey(target);
    let p = this.clients.get(key);
    if (!p) {
      const client = new pg.Client({
        ...this.settings.clientConfig(target, { application_name: 'pgcoord_discovery' }),
        connectionTimeoutMillis: this.settings.timeoutMs,
        query_timeout: this.settings.timeoutMs,
        keepAlive: true,
      });
      const drop = () => {
        if (this.clients.get(key) === p) this.clients.delete(key);
      };
      client.on('error', drop);
      client.on('end', drop);
      p = client.connect().then(
        () => client,
        async (err: unknown) => {
          drop();
          await client.end().catch(() => undefined);
          throw err;
        },
      );
      this.clients.set(key, p);
    }
    return p;
  }
}
