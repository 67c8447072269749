import type { ConsoleChanges, ConsoleSample } from '../../src/server/console-types.js';
import { ConfirmButton, Empty, Panel, TableWrap, useAction, type Notify } from './common.js';
import { api, seg } from './feed.js';
import { ago, num, time } from './format.js';
import { Sparkline } from './sparkline.js';

export function ChangesPanel(props: {
  changes: ConsoleChanges | null;
  history: ConsoleSample[];
  now: string;
  readOnly: boolean;
  notify: Notify;
  problem?: string | undefined;
}) {
  const { changes, readOnly } = props;
  const { busy, run } = useAction(props.notify);
  const replay = (group: string, changeIds?: string[]) =>
    run(`replay:${group}:${changeIds?.[0] ?? '*'}`, async () => {
      const r = await api<{ replayed: number }>(
        'POST',
        `/v1/changes/groups/${seg(group)}/dead/replay`,
        changeIds ? { changeIds } : {},
      );
      return `Queued ${r.replayed} dead letter${r.replayed === 1 ? '' : 's'} of ${group} for replay.`;
    });
  const drop = (group: string) =>
    run(`drop:${group}`, async () => {
      const r = await api<{ deleted: boolean }>('DELETE', `/v1/changes/groups/${seg(group)}`);
      return r.deleted ? `Dropped group ${group}.` : `Group ${group} was already gone.`;
    });

  return (
    <Panel id="changes" title="Change capture" problem={props.problem}>
      {changes ? (
        <>
          <h3>Tracked tables</h3>
          {changes.tables.length === 0 ? (
            <Empty>No table is tracked.</Empty>
          ) : (
            <ul class="chips">
              {changes.tables.map((t) => (
                <li key={`${t.schema}.${t.name}`}>
                  {t.schema}.{t.name} <span class="muted">({t.operations.join(', ')})</span>
                </li>
              ))}
            </ul>
          )}
          <h3>Consumer groups</h3>
          {changes.groups.length === 0 ? (
            <Empty>No consumer group.</Empty>
          ) : (
            <TableWrap label="Consumer groups">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Group</th>
                    <th scope="col" class="n">
                      Lane
                    </th>
                    <th scope="col" class="n">
                      Position
                    </th>
                    <th scope="col" class="n">
                      Lag
                    </th>
                    <th scope="col">Lag trend</th>
                    <th scope="col">Owner</th>
                    <th scope="col" class="n">
                      Delivered
                    </th>
                    <th scope="col" class="n">
                      Failures
                    </th>
                    <th scope="col">Last error</th>
                    {readOnly ? null : (
                      <th scope="col">
                        <span class="sr-only">Actions</span>
                      </th>
                    )}
                  </tr>
                </thead>
                <tbody>
                  {changes.groups.map((g) => (
                    <tr key={`${g.group}/${g.partition}`} data-group={g.group}>
                      <th scope="row" class="name">
                        {g.group} <span class="muted">{g.mode}</span>
                      </th>
                      <td class="n">
                        {g.partition + 1}/{g.partitions}
                      </td>
                      <td class="n">{g.lowWater}</td>
                      <td class={g.lag > 0 ? 'n warn' : 'n'} data-col="lag">
                        {num(g.lag)}
                      </td>
                      <td>
                        {g.partition === 0 ? (
                          <Sparkline
                            values={props.history.map((s) => s.lag[g.group] ?? 0)}
                            label={`${g.group} lag`}
                          />
                        ) : null}
                      </td>
                      <td data-col="owner">
                        {g.owner ?? <span class="muted">none</span>}
                        {g.owner && g.leaseExpiresAt ? (
                          <span class="muted"> until {time(g.leaseExpiresAt)}</span>
                        ) : null}
                      </td>
                      <td class="n">{num(g.deliveredCount)}</td>
                      <td class={g.attempts > 0 ? 'n bad' : 'n'}>{g.attempts}</td>
                      <td class="error-text">{g.lastError ?? ''}</td>
                      {readOnly ? null : (
                        <td>
                          {g.partition === 0 ? (
                            <ConfirmButton
                              label={`Drop`}
                              confirmLabel={`Drop ${g.group} for good`}
                              busy={busy !== null}
                              onConfirm={() => void drop(g.group)}
                            />
                          ) : null}
                        </td>
                      )}
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableWrap>
          )}
          <h3>Dead letters</h3>
          {Object.keys(changes.deadLetters).length === 0 ? <Empty>No dead letters.</Empty> : null}
          {Object.entries(changes.deadLetters).map(([group, letters]) => (
            <div key={group} class="subpanel">
              <h4>
                {group}{' '}
                {readOnly ? null : (
                  <button type="button" disabled={busy !== null} onClick={() => void replay(group)}>
                    Replay all<span class="sr-only"> dead letters of {group}</span>
                  </button>
                )}
              </h4>
              <TableWrap label={`Dead letters of ${group}`}>
                <table>
                  <thead>
                    <tr>
                      <th scope="col" class="n">
                        Change
                      </th>
                      <th scope="col">Table, operation</th>
                      <th scope="col" class="n">
                        Tries
                      </th>
                      <th scope="col">State</th>
                      <th scope="col">Failed</th>
                      <th scope="col">Error</th>
                      {readOnly ? null : (
                        <th scope="col">
                          <span class="sr-only">Actions</span>
                        </th>
                      )}
                    </tr>
                  </thead>
                  <tbody>
                    {letters.map((d) => (
                      <tr key={d.id}>
                        <td class="n">{d.changeId}</td>
                        <td>{d.summary}</td>
                        <td class="n">{d.attempts}</td>
                        <td>{d.state}</td>
                        <td>{ago(d.failedAt, props.now)}</td>
                        <td class="error-text">{d.lastError ?? ''}</td>
                        {readOnly ? null : (
                          <td>
                            <button
                              type="button"
                              disabled={busy !== null || d.state === 'replay'}
                              onClick={() => void replay(group, [d.changeId])}
                            >
                              Replay<span class="sr-only"> change {d.changeId}</span>
                            </button>
                          </td>
                        )}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </TableWrap>
            </div>
          ))}
        </>
      ) : null}
    </Panel>
  );
}
