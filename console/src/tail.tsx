import { useEffect, useRef, useState } from 'preact/hooks';
import { Panel, describeError } from './common.js';
import { readEvents, seg } from './feed.js';

interface Line {
  n: number;
  at: string;
  payload: string;
}

const KEEP = 50;

/** A live tail of one channel, on the service's own channel stream; stops when asked. */
export function TailPanel() {
  const [channel, setChannel] = useState('');
  const [following, setFollowing] = useState<string | null>(null);
  const [lines, setLines] = useState<Line[]>([]);
  const [state, setState] = useState('');
  const counter = useRef(0);

  useEffect(() => {
    if (following === null) return;
    const controller = new AbortController();
    setState(`Connecting to ${following}…`);
    readEvents(
      `/v1/channels/${seg(following)}/events`,
      (e) => {
        if (e.event === 'ready') setState(`Following ${following}.`);
        if (e.event !== 'notification') return;
        const line = {
          n: ++counter.current,
          at: new Date().toLocaleTimeString('en-GB'),
          payload: e.data,
        };
        setLines((old) => [line, ...old].slice(0, KEEP));
      },
      controller.signal,
    ).then(
      () => !controller.signal.aborted && setState('The stream ended.'),
      (err) => !controller.signal.aborted && setState(describeError(err)),
    );
    return () => controller.abort();
  }, [following]);

  return (
    <Panel id="tail" title="Notifications">
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (following !== null) {
            setFollowing(null);
            setState('Stopped.');
          } else if (channel !== '') {
            setLines([]);
            setFollowing(channel);
          }
        }}
      >
        <label for="channel">Channel</label>
        <input
          id="channel"
          value={channel}
          disabled={following !== null}
          onInput={(e) => setChannel(e.currentTarget.value)}
          autocomplete="off"
        />
        <button type="submit">{following === null ? 'Follow' : 'Stop'}</button>
      </form>
      <p class="hint" role="status">
        {state}
      </p>
      {lines.length > 0 ? (
        <ol class="tail" aria-label={`Notifications on ${following ?? channel}, newest first`}>
          {lines.map((l) => (
            <li key={l.n}>
              <span class="muted">{l.at}</span> <code>{l.payload}</code>
            </li>
          ))}
        </ol>
      ) : null}
    </Panel>
  );
}
