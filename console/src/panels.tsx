import type { ConsoleSnapshot, ConsoleSample } from '../../src/server/console-types.js';
import { ConfirmButton, Empty, Panel, TableWrap, useAction, type Notify } from './common.js';
import { api, seg } from './feed.js';
import { ago, ms, num, rate, time, units } from './format.js';
import { Sparkline } from './sparkline.js';

export function WorkersPanel(props: { snapshot: ConsoleSnapshot; problem?: string | undefined }) {
  const { workers, at } = props.snapshot;
  return (
    <Panel id="workers" title="Workers" problem={props.problem}>
      {workers === null && !props.problem ? (
        <Empty>This service does not report workers (no worker registry).</Empty>
      ) : null}
      {workers && workers.length === 0 ? <Empty>No live worker.</Empty> : null}
      {workers && workers.length > 0 ? (
        <TableWrap label="Workers">
          <table>
            <thead>
              <tr>
                <th scope="col">List</th>
                <th scope="col">Host</th>
                <th scope="col" class="n">
                  Pid
                </th>
                <th scope="col" class="n">
                  In flight
                </th>
                <th scope="col" class="n">
                  Concurrency
                </th>
                <th scope="col">Started</th>
                <th scope="col">Last heartbeat</th>
              </tr>
            </thead>
            <tbody>
              {workers.map((w) => (
                <tr key={w.id}>
                  <th scope="row">{w.list}</th>
                  <td>{w.host}</td>
                  <td class="n">{w.pid}</td>
                  <td class="n">{w.inFlight}</td>
                  <td class="n">{w.concurrency}</td>
                  <td>{time(w.startedAt)}</td>
                  <td>{ago(w.heartbeatAt, at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      ) : null}
    </Panel>
  );
}

export function LeasesPanel(props: {
  snapshot: ConsoleSnapshot;
  notify: Notify;
  problem?: string | undefined;
}) {
  const { leases, readOnly } = props.snapshot;
  const { busy, run } = useAction(props.notify);
  const release = (name: string, token: string) =>
    run(`release:${name}`, async () => {
      await api('POST', `/v1/leases/${seg(name)}/release`, { token });
      return `Released ${name}.`;
    });
  return (
    <Panel id="leases" title="Leases and leaders" problem={props.problem}>
      {leases && leases.length === 0 ? <Empty>No lease is held.</Empty> : null}
      {leases && leases.length > 0 ? (
        <TableWrap label="Leases">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Holder</th>
                <th scope="col" class="n">
                  Token
                </th>
                <th scope="col" class="n">
                  Time left
                </th>
                {readOnly ? null : (
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {leases.map((l) => (
                <tr key={l.name}>
                  <th scope="row">{l.name}</th>
                  <td>{l.owner}</td>
                  <td class="n">{l.token}</td>
                  <td class="n">{ms(l.remainingMs)}</td>
                  {readOnly ? null : (
                    <td>
                      <ConfirmButton
                        label="Release"
                        confirmLabel={`Release ${l.name} now`}
                        busy={busy !== null}
                        onConfirm={() => void release(l.name, l.token)}
                      />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      ) : null}
    </Panel>
  );
}

export function LimitsPanel(props: { snapshot: ConsoleSnapshot }) {
  const { limits } = props.snapshot;
  return (
    <Panel id="limits" title="Rate limiters">
      {limits.length === 0 ? (
        <Empty>No decision made through this service since it started.</Empty>
      ) : (
        <TableWrap label="Rate limiters">
          <table>
            <thead>
              <tr>
                <th scope="col">Limiter</th>
                <th scope="col" class="n">
                  Allowed
                </th>
                <th scope="col" class="n">
                  Denied
                </th>
                <th scope="col" class="n">
                  Denied %
                </th>
                <th scope="col">Recent decisions (newest first)</th>
              </tr>
            </thead>
            <tbody>
              {limits.map((l) => {
                const total = l.allowed + l.denied;
                return (
                  <tr key={l.name}>
                    <th scope="row">{l.name}</th>
                    <td class="n">{num(l.allowed)}</td>
                    <td class={l.denied > 0 ? 'n warn' : 'n'}>{num(l.denied)}</td>
                    <td class="n">{total === 0 ? '–' : ((100 * l.denied) / total).toFixed(1)}</td>
                    <td>
                      <ul class="decisions">
                        {[...l.recent]
                          .reverse()
                          .slice(0, 6)
                          .map((d, i) => (
                            <li key={i} class={d.allowed ? 'ok' : 'bad'}>
                              {d.key}: {d.allowed ? 'allowed' : 'denied'}, {units(d.remaining)} left{' '}
                              <span class="muted">{time(d.at)}</span>
                            </li>
                          ))}
                      </ul>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </TableWrap>
      )}
    </Panel>
  );
}

export function ClusterPanel(props: { snapshot: ConsoleSnapshot }) {
  const { cluster } = props.snapshot;
  if (cluster === null) return null;
  return (
    <Panel id="cluster" title="Cluster instances">
      <TableWrap label="Cluster instances">
        <table>
          <thead>
            <tr>
              <th scope="col">Instance</th>
              <th scope="col">Role</th>
              <th scope="col">Health</th>
              <th scope="col" class="n">
                Lag
              </th>
              <th scope="col" class="n">
                Failures
              </th>
              <th scope="col" class="n">
                Connections (in use/max)
              </th>
            </tr>
          </thead>
          <tbody>
            {cluster.map((i) => (
              <tr key={i.key}>
                <th scope="row">{i.key}</th>
                <td>{i.role}</td>
                <td class={i.health === 'up' ? 'ok' : 'bad'}>{i.health}</td>
                <td class="n">
                  {i.lagMs !== null
                    ? ms(i.lagMs)
                    : i.lagBytes !== null
                      ? `${num(i.lagBytes)} B`
                      : '–'}
                </td>
                <td class="n">{i.failures}</td>
                <td class="n">
                  {i.connections.inUse}/{i.connections.max}
                  {i.connections.waiting > 0 ? `, ${i.connections.waiting} waiting` : ''}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
    </Panel>
  );
}

export function ServicePanel(props: { snapshot: ConsoleSnapshot; history: ConsoleSample[] }) {
  const { routes } = props.snapshot.service;
  const h = props.history;
  const last = h[h.length - 1];
  return (
    <Panel id="service" title="This service">
      <div class="stats">
        <div>
          <span class="label">Requests/s</span>{' '}
          <strong>{rate(last?.requestsPerSecond ?? 0)}</strong>
          <Sparkline values={h.map((s) => s.requestsPerSecond)} label="Requests per second" />
        </div>
        <div>
          <span class="label">p95 latency</span> <strong>{ms(last?.p95Ms ?? null)}</strong>
          <Sparkline
            values={h.map((s) => s.p95Ms ?? 0)}
            label="95th percentile latency"
            unit=" ms"
          />
        </div>
        <div>
          <span class="label">5xx/s</span> <strong>{rate(last?.serverErrorsPerSecond ?? 0)}</strong>
          <Sparkline
            values={h.map((s) => s.serverErrorsPerSecond)}
            label="Server errors per second"
            warn
          />
        </div>
      </div>
      {routes.length === 0 ? (
        <Empty>No request in the last interval.</Empty>
      ) : (
        <TableWrap label="Busiest routes">
          <table>
            <caption>Busiest routes, last interval</caption>
            <thead>
              <tr>
                <th scope="col">Route</th>
                <th scope="col" class="n">
                  Requests/s
                </th>
                <th scope="col" class="n">
                  p95
                </th>
                <th scope="col" class="n">
                  5xx/s
                </th>
              </tr>
            </thead>
            <tbody>
              {routes.map((r) => (
                <tr key={`${r.method} ${r.route}`}>
                  <th scope="row" class="item">
                    {r.method} {r.route}
                  </th>
                  <td class="n">{rate(r.perSecond)}</td>
                  <td class="n">{ms(r.p95Ms)}</td>
                  <td class={r.serverErrorsPerSecond > 0 ? 'n bad' : 'n'}>
                    {rate(r.serverErrorsPerSecond)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
    </Panel>
  );
}
