import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { ConsoleSample, ConsoleSnapshot } from '../../src/server/console-types.js';
import { ChangesPanel } from './changes.js';
import type { Notify } from './common.js';
import { TOKEN_NEEDED, follow, getToken, setToken, type FeedStatus } from './feed.js';
import { time } from './format.js';
import { DeadItems, ItemBrowser, ListsPanel } from './lists.js';
import { ClusterPanel, LeasesPanel, LimitsPanel, ServicePanel, WorkersPanel } from './panels.js';
import { TailPanel } from './tail.js';

const HISTORY = 120;

const STATUS_TEXT: Record<FeedStatus, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  'needs-token': 'Token needed',
  offline: 'Offline, retrying',
};

export function App() {
  const [snapshot, setSnapshot] = useState<ConsoleSnapshot | null>(null);
  const [history, setHistory] = useState<ConsoleSample[]>([]);
  const [status, setStatus] = useState<FeedStatus>('connecting');
  const [detail, setDetail] = useState('');
  const [selected, setSelected] = useState<string | null>(null);
  const [notice, setNotice] = useState<{ text: string; kind: 'ok' | 'error' } | null>(null);
  const feed = useRef<ReturnType<typeof follow> | null>(null);

  useEffect(() => {
    feed.current = follow(
      '/v1/console/events',
      (e) => {
        if (e.event === 'history') {
          setHistory((JSON.parse(e.data) as ConsoleSample[]).slice(-HISTORY));
        } else if (e.event === 'snapshot') {
          const s = JSON.parse(e.data) as ConsoleSnapshot;
          setSnapshot(s);
          // A snapshot arrived: whatever a write's 401 said, the feed itself is authorized.
          setStatus('live');
          setHistory((h) =>
            h[h.length - 1]?.at === s.sample.at ? h : [...h, s.sample].slice(-HISTORY),
          );
        }
      },
      (s, d) => {
        setStatus(s);
        setDetail(d ?? '');
      },
    );
    const onTokenNeeded = () => setStatus('needs-token');
    window.addEventListener(TOKEN_NEEDED, onTokenNeeded);
    return () => {
      window.removeEventListener(TOKEN_NEEDED, onTokenNeeded);
      feed.current?.stop();
    };
  }, []);

  const notify: Notify = (text, kind = 'ok') => setNotice({ text, kind });
  const selectedRow = useMemo(
    () => snapshot?.lists?.find((l) => l.list === selected),
    [snapshot, selected],
  );
  const problems = snapshot?.problems ?? {};

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header>
        <h1>pgcoord</h1>
        <p class={`status ${status}`} role="status" aria-live="polite">
          {STATUS_TEXT[status]}
          {status === 'offline' && detail ? `: ${detail}` : ''}
          {snapshot && status === 'live' ? <span class="muted"> · {time(snapshot.at)}</span> : null}
          {snapshot?.readOnly ? <span class="badge">read-only</span> : null}
        </p>
        <nav aria-label="Sections">
          <ul>
            {[
              ['lists', 'Lists'],
              ['workers', 'Workers'],
              ['changes', 'Changes'],
              ['leases', 'Leases'],
              ['limits', 'Limits'],
              ['tail', 'Notifications'],
              ...(snapshot?.cluster ? [['cluster', 'Cluster']] : []),
              ['service', 'Service'],
            ].map(([id, label]) => (
              <li key={id}>
                <a href={`#${id}`}>{label}</a>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      {notice ? (
        <div class={`notice ${notice.kind}`} role={notice.kind === 'error' ? 'alert' : 'status'}>
          <span>{notice.text}</span>
          <button type="button" onClick={() => setNotice(null)} aria-label="Dismiss message">
            ×
          </button>
        </div>
      ) : null}
      <main id="main">
        {status === 'needs-token' ? (
          <TokenForm
            onToken={(t) => {
              setToken(t);
              setNotice(null);
              setStatus('connecting');
              feed.current?.retryNow();
            }}
          />
        ) : null}
        {snapshot === null && status !== 'needs-token' ? (
          <p class="empty">Waiting for the first snapshot…</p>
        ) : null}
        {snapshot ? (
          <div class="grid">
            <ListsPanel
              lists={snapshot.lists}
              history={history}
              selected={selected}
              onSelect={(l) => setSelected(l === selected ? null : l)}
              problem={problems.lists}
            />
            {selected ? (
              <section class="panel wide" aria-label={`List ${selected}`}>
                <DeadItems
                  list={selected}
                  dead={selectedRow?.dead ?? 0}
                  readOnly={snapshot.readOnly}
                  notify={notify}
                />
                <ItemBrowser list={selected} size={selectedRow?.total} notify={notify} />
              </section>
            ) : null}
            <WorkersPanel snapshot={snapshot} problem={problems.workers} />
            <ChangesPanel
              changes={snapshot.changes}
              history={history}
              now={snapshot.at}
              readOnly={snapshot.readOnly}
              notify={notify}
              problem={problems.changes}
            />
            <LeasesPanel snapshot={snapshot} notify={notify} problem={problems.leases} />
            <LimitsPanel snapshot={snapshot} />
            <TailPanel />
            <ClusterPanel snapshot={snapshot} />
            <ServicePanel snapshot={snapshot} history={history} />
          </div>
        ) : null}
      </main>
    </>
  );
}

function TokenForm(props: { onToken: (token: string) => void }) {
  const [value, setValue] = useState('');
  const hadToken = getToken() !== null;
  return (
    <form
      class="panel token"
      aria-labelledby="token-title"
      onSubmit={(e) => {
        e.preventDefault();
        if (value.trim() !== '') props.onToken(value.trim());
      }}
    >
      <h2 id="token-title">This service needs its token</h2>
      <p>
        {hadToken ? 'The token given was refused. ' : ''}Enter the token the service was started
        with (<code>PGCOORD_TOKEN</code>). It is kept in this tab only and sent in a header, never
        in a URL.
      </p>
      <label for="token">Token</label>
      <input
        id="token"
        type="password"
        autocomplete="current-password"
        value={value}
        onInput={(e) => setValue(e.currentTarget.value)}
        ref={(el) => el?.focus()}
      />
      <button type="submit">Connect</button>
    </form>
  );
}
