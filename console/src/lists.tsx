import { useEffect, useState } from 'preact/hooks';
import type { ConsoleListRow, ConsoleSample } from '../../src/server/console-types.js';
import { Empty, Panel, TableWrap, describeError, useAction, type Notify } from './common.js';
import { api, seg } from './feed.js';
import { num, rate } from './format.js';
import { Sparkline } from './sparkline.js';

interface Entry {
  item: string;
  attempts: number;
}
interface Page {
  entries: Entry[];
  last?: string;
}

const PAGE = 50;

export function ListsPanel(props: {
  lists: ConsoleListRow[] | null;
  history: ConsoleSample[];
  selected: string | null;
  onSelect: (list: string) => void;
  problem?: string | undefined;
}) {
  const { lists, history } = props;
  return (
    <Panel id="lists" title="Lists" problem={props.problem}>
      {lists && lists.length === 0 ? <Empty>No items in any list.</Empty> : null}
      {lists && lists.length > 0 ? (
        <TableWrap label="Lists">
          <table>
            <thead>
              <tr>
                <th scope="col">List</th>
                <th scope="col" class="n">
                  Size
                </th>
                <th scope="col" class="n">
                  Claimable
                </th>
                <th scope="col" class="n">
                  Leased
                </th>
                <th scope="col" class="n">
                  Delayed
                </th>
                <th scope="col" class="n">
                  Dead
                </th>
                <th scope="col">Drained/s</th>
                <th scope="col">New dead/s</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {lists.map((l) => {
                const series = history.map((s) => s.lists[l.list]);
                const drained = series.map((p) => p?.drainedPerSecond ?? 0);
                const dead = series.map((p) => p?.newDeadPerSecond ?? 0);
                return (
                  <tr
                    key={l.list}
                    data-list={l.list}
                    class={props.selected === l.list ? 'selected' : undefined}
                  >
                    <th scope="row" class="name">
                      {l.list}
                    </th>
                    <td class="n" data-col="size">
                      {num(l.total)}
                    </td>
                    <td class="n" data-col="claimable">
                      {num(l.claimable)}
                    </td>
                    <td class="n" data-col="leased">
                      {num(l.leased)}
                    </td>
                    <td class="n" data-col="delayed">
                      {num(l.delayed)}
                    </td>
                    <td class={l.dead > 0 ? 'n bad' : 'n'} data-col="dead">
                      {num(l.dead)}
                    </td>
                    <td>
                      <Sparkline values={drained} label={`${l.list} drained per second`} />{' '}
                      <span class="figure">{rate(drained[drained.length - 1] ?? 0)}</span>
                    </td>
                    <td>
                      <Sparkline values={dead} label={`${l.list} new dead per second`} warn />{' '}
                      <span class="figure">{rate(dead[dead.length - 1] ?? 0)}</span>
                    </td>
                    <td>
                      <button
                        type="button"
                        onClick={() => props.onSelect(l.list)}
                        aria-pressed={props.selected === l.list}
                      >
                        Browse<span class="sr-only"> {l.list}</span>
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </TableWrap>
      ) : null}
      {lists?.some((l) => l.keys && l.keys.length > 0) ? <KeysTable lists={lists} /> : null}
      <p class="hint">
        Drained/s is the fall in size per second (net of inserts); new dead/s the rise in dead
        items.
      </p>
    </Panel>
  );
}

/** Per-key counts and limits, shown only when the service reports keys. */
function KeysTable(props: { lists: ConsoleListRow[] }) {
  return (
    <TableWrap label="Keys and limits">
      <table>
        <caption>Keys and limits</caption>
        <thead>
          <tr>
            <th scope="col">List</th>
            <th scope="col">Key</th>
            <th scope="col" class="n">
              Items
            </th>
            <th scope="col" class="n">
              Claimable
            </th>
            <th scope="col" class="n">
              Leased
            </th>
            <th scope="col">Limit</th>
          </tr>
        </thead>
        <tbody>
          {props.lists.flatMap((l) =>
            (l.keys ?? []).map((k) => (
              <tr key={`${l.list}\u0000${k.key}`}>
                <td>{l.list}</td>
                <th scope="row">{k.key}</th>
                <td class="n">{k.total === undefined ? '–' : num(k.total)}</td>
                <td class="n">{k.claimable === undefined ? '–' : num(k.claimable)}</td>
                <td class="n">{k.leased === undefined ? '–' : num(k.leased)}</td>
                <td>{k.limit === undefined ? '–' : String(k.limit)}</td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    </TableWrap>
  );
}

/** UTF-8 byte order, the order the service pages in. */
function compareBytes(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/** Just before every string that starts with `prefix`, in byte order (a keyset `after`). */
function before(prefix: string): string {
  const chars = [...prefix];
  const last = chars.pop()!;
  const code = last.codePointAt(0)!;
  return code <= 1
    ? chars.join('')
    : chars.join('') + String.fromCodePoint(code - 1) + '\u{10FFFF}';
}

export function ItemBrowser(props: { list: string; size: number | undefined; notify: Notify }) {
  const [prefix, setPrefix] = useState('');
  const [applied, setApplied] = useState('');
  const [pages, setPages] = useState<string[]>(['']);
  const [page, setPage] = useState<Page | null>(null);
  const [error, setError] = useState<string | null>(null);
  const after = pages[pages.length - 1]!;

  useEffect(() => {
    setPages([applied === '' ? '' : before(applied)]);
  }, [props.list, applied]);

  useEffect(() => {
    let cancelled = false;
    void (async () => {
      try {
        const entries: Entry[] = [];
        let cursor = after;
        let last: string | undefined;
        // With a prefix, skip what sorts before it and stop at the first item past it.
        for (let round = 0; round < 20 && entries.length < PAGE; round++) {
          const r = await api<Page>(
            'GET',
            `/v1/lists/${seg(props.list)}/items?count=${PAGE}&after=${encodeURIComponent(cursor)}`,
          );
          let done = r.last === undefined;
          for (const e of r.entries) {
            if (applied === '' || e.item.startsWith(applied)) entries.push(e);
            else if (compareBytes(e.item, applied) > 0) {
              done = true;
              break;
            }
            last = e.item;
            if (entries.length === PAGE) break;
          }
          if (done || applied === '') break;
          cursor = r.last!;
        }
        if (!cancelled) {
          setPage({ entries, ...(entries.length === PAGE && last !== undefined ? { last } : {}) });
          setError(null);
        }
      } catch (err) {
        if (!cancelled) setError(describeError(err));
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [props.list, after, applied]);

  return (
    <div class="subpanel" aria-labelledby="browser-title">
      <h3 id="browser-title">Items of {props.list}</h3>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(prefix);
        }}
      >
        <label for="prefix">Prefix</label>
        <input
          id="prefix"
          value={prefix}
          onInput={(e) => setPrefix(e.currentTarget.value)}
          autocomplete="off"
        />
        <button type="submit">Search</button>
        <button
          type="button"
          onClick={() => setPages([...pages.slice(0, 1)])}
          disabled={pages.length === 1}
        >
          First page
        </button>
        <button
          type="button"
          onClick={() => setPages(pages.slice(0, -1))}
          disabled={pages.length === 1}
        >
          Previous
        </button>
        <button
          type="button"
          onClick={() => page?.last !== undefined && setPages([...pages, page.last])}
          disabled={page?.last === undefined}
        >
          Next
        </button>
      </form>
      {error ? <p class="problem">{error}</p> : null}
      {page && page.entries.length === 0 ? (
        <Empty>No items{applied ? ` starting with “${applied}”` : ''}.</Empty>
      ) : null}
      {page && page.entries.length > 0 ? (
        <TableWrap label={`Items of ${props.list}`}>
          <table class="items">
            <thead>
              <tr>
                <th scope="col">Item</th>
                <th scope="col" class="n">
                  Attempts
                </th>
              </tr>
            </thead>
            <tbody>
              {page.entries.map((e) => (
                <tr key={e.item}>
                  <td class="item">{e.item}</td>
                  <td class="n">{e.attempts}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      ) : null}
      <p class="hint">
        Page {pages.length}, {PAGE} per page
        {props.size === undefined ? '' : ` of ${num(props.size)} items`}.
      </p>
    </div>
  );
}

export function DeadItems(props: {
  list: string;
  dead: number;
  readOnly: boolean;
  notify: Notify;
}) {
  const [entries, setEntries] = useState<Entry[] | null>(null);
  const [reload, setReload] = useState(0);
  const { busy, run } = useAction(props.notify);

  // Read again when the snapshot's dead count moves: no polling of its own.
  useEffect(() => {
    let cancelled = false;
    api<Page>('GET', `/v1/lists/${seg(props.list)}/dead?count=${PAGE}`).then(
      (r) => !cancelled && setEntries(r.entries),
      (err) => !cancelled && props.notify(describeError(err), 'error'),
    );
    return () => {
      cancelled = true;
    };
  }, [props.list, props.dead, reload]);

  const requeue = (items: string[] | undefined) =>
    run(items ? `one:${items[0]}` : 'all', async () => {
      const r = await api<{ requeued: number }>(
        'POST',
        `/v1/lists/${seg(props.list)}/dead/requeue`,
        items ? { items } : {},
      );
      setReload((n) => n + 1);
      return `Requeued ${r.requeued} item${r.requeued === 1 ? '' : 's'} of ${props.list}.`;
    });

  return (
    <div class="subpanel" aria-labelledby="dead-title">
      <h3 id="dead-title">Dead items of {props.list}</h3>
      {entries && entries.length === 0 ? <Empty>No dead items.</Empty> : null}
      {entries && entries.length > 0 ? (
        <>
          {props.readOnly ? null : (
            <p>
              <button type="button" disabled={busy !== null} onClick={() => requeue(undefined)}>
                Requeue all dead items
              </button>
            </p>
          )}
          <TableWrap label={`Dead items of ${props.list}`}>
            <table>
              <thead>
                <tr>
                  <th scope="col">Item</th>
                  <th scope="col" class="n">
                    Attempts
                  </th>
                  {props.readOnly ? null : (
                    <th scope="col">
                      <span class="sr-only">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {entries.map((e) => (
                  <tr key={e.item} data-dead={e.item}>
                    <td class="item">{e.item}</td>
                    <td class="n">{e.attempts}</td>
                    {props.readOnly ? null : (
                      <td>
                        <button
                          type="button"
                          disabled={busy !== null}
                          onClick={() => requeue([e.item])}
                        >
                          Requeue<span class="sr-only"> {e.item}</span>
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        </>
      ) : null}
    </div>
  );
}
