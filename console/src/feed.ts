// Talking to the service: the token (sessionStorage, always in the Authorization header, never
// in a URL), JSON calls, and Server-Sent Events read with fetch() so the header can be sent
// (EventSource cannot send one).

import { SseParser, type SseEvent } from './sse-parser.js';

export type { SseEvent } from './sse-parser.js';

const TOKEN_KEY = 'pgcoord.token';

/** Fired on window when a request got 401: the page asks for the token. */
export const TOKEN_NEEDED = 'pgcoord:token-needed';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Storage refused (private mode quotas): the token lasts until the page closes.
  }
  memoryToken = token;
}

let memoryToken: string | null = null;

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = { accept: json ? 'application/json' : 'text/event-stream' };
  const token = getToken() ?? memoryToken;
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

/** An error reply of the service. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function failure(res: Response): Promise<ApiError> {
  let code = 'PGCOORD_HTTP';
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // Not JSON: keep the status line.
  }
  if (res.status === 401) window.dispatchEvent(new Event(TOKEN_NEEDED));
  return new ApiError(res.status, code, message);
}

/** A JSON call; path segments must already be encoded (see {@link seg}). */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: headers(true), cache: 'no-store' };
  if (body !== undefined) {
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/** One path segment, encoded. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}

/**
 * Reads the event stream at `path` until it ends or `signal` aborts, calling `onEvent` per event.
 * Rejects with an {@link ApiError} when the reply is not a stream (401 included).
 */
export async function readEvents(
  path: string,
  onEvent: (e: SseEvent) => void,
  signal: AbortSignal,
  onOpen?: () => void,
): Promise<void> {
  const res = await fetch(path, { headers: headers(false), signal, cache: 'no-store' });
  if (!res.ok || !res.body) throw await failure(res);
  onOpen?.();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    for (const e of done ? parser.end() : parser.push(value)) onEvent(e);
    if (done) return;
  }
}

export type FeedStatus = 'connecting' | 'live' | 'needs-token' | 'offline';

/**
 * Follows a stream for as long as the page wants it: reconnects with a growing delay (1 s to
 * 10 s) after a drop, and waits for a token (status `needs-token`) after a 401. Returns stop().
 */
export function follow(
  path: string,
  onEvent: (e: SseEvent) => void,
  onStatus: (s: FeedStatus, detail?: string) => void,
): { stop(): void; retryNow(): void } {
  const controller = new AbortController();
  let delay = 1000;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  void (async () => {
    while (!controller.signal.aborted) {
      onStatus('connecting');
      try {
        await readEvents(path, onEvent, controller.signal, () => {
          delay = 1000;
          onStatus('live');
        });
        if (!controller.signal.aborted) onStatus('offline', 'the stream ended');
      } catch (err) {
        if (controller.signal.aborted) return;
        if (err instanceof ApiError && err.status === 401) {
          onStatus('needs-token');
          // Until a token is given (retryNow), nothing more is asked of the service.
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        onStatus('offline', err instanceof Error ? err.message : String(err));
      }
      await pause(delay);
      delay = Math.min(delay * 2, 10_000);
    }
  })();
  return {
    stop: () => {
      controller.abort();
      wake?.();
    },
    retryNow: () => wake?.(),
  };
}
