/** A minimal Server-Sent Events client over fetch, for tests and benchmarks. */
export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

export interface SseClient {
  events: SseEvent[];
  /** Resolves with the first event (already received or coming) matching `pred`. */
  next(pred?: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  close(): void;
  status: number;
  /** Resolves when the stream ends: the server closed it, or close() was called. */
  ended: Promise<void>;
}

export async function openSse(
  url: string,
  headers: Record<string, string> = {},
): Promise<SseClient> {
  const controller = new AbortController();
  const res = await fetch(url, { headers, signal: controller.signal });
  const events: SseEvent[] = [];
  const waiters: Array<() => void> = [];
  let consumed = 0;
  let ended = Promise.resolve();
  if (res.ok && res.body) {
    ended = (async () => {
      const decoder = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += decoder.decode(chunk, { stream: true });
          let idx: number;
          while ((idx = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, idx);
            buf = buf.slice(idx + 2);
            const e: SseEvent = { event: 'message', data: '' };
            const data: string[] = [];
            let any = false;
            for (const line of frame.split('\n')) {
              if (line.startsWith(':') || line === '') continue;
              const [k, ...rest] = line.split(':');
              const v = rest.join(':').replace(/^ /, '');
              if (k === 'data') data.push(v);
              else if (k === 'event') e.event = v;
              else if (k === 'id') e.id = v;
              else continue;
              any = true;
            }
            if (!any) continue;
            e.data = data.join('\n');
            events.push(e);
            for (const w of waiters.splice(0)) w();
          }
        }
      } catch {
        // Aborted.
      }
    })();
  }
  return {
    events,
    status: res.status,
    async next(pred = () => true, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        for (let i = consumed; i < events.length; i++) {
          if (pred(events[i]!)) {
            consumed = i + 1;
            return events[i]!;
          }
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no matching SSE event within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    close: () => controller.abort(),
    ended,
  };
}
