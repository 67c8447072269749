import type { FastifyReply, FastifyRequest } from 'fastify';

/** One open Server-Sent Events response. */
export interface SseStream {
  /** Sends one event; `data` may span lines. Returns false once the client has gone. */
  send(event: { id?: string; event?: string; data: string }): boolean;
  /** Ends the stream (idempotent). */
  close(): void;
  /** Resolves when the client disconnects or close() is called. */
  closed: Promise<void>;
}

/** Sent every this many ms so proxies and clients keep an idle stream open. */
const HEARTBEAT_MS = 15_000;

const open = new Set<SseStream>();

/**
 * Takes over `reply` as an SSE stream (`text/event-stream`). The first line is sent at once, so
 * a client knows it is subscribed as soon as it reads the headers.
 */
export function openSse(request: FastifyRequest, reply: FastifyReply): SseStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write(': subscribed\nretry: 1000\n\n');
  let done = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  const finish = () => {
    if (done) return;
    done = true;
    clearInterval(heartbeat);
    open.delete(stream);
    resolveClosed();
  };
  const stream: SseStream = {
    send({ id, event, data }) {
      if (done) return false;
      let frame = '';
      if (id !== undefined) frame += `id: ${id.replace(/[\r\n]/g, '')}\n`;
      if (event !== undefined) frame += `event: ${event.replace(/[\r\n]/g, '')}\n`;
      for (const line of data.split(/\r\n|\r|\n/)) frame += `data: ${line}\n`;
      res.write(frame + '\n');
      return true;
    },
    close() {
      if (done) return;
      finish();
      res.end();
    },
    closed,
  };
  open.add(stream);
  request.raw.once('close', finish);
  res.once('close', finish);
  return stream;
}

/** Ends every open stream (server shutdown). */
export function closeAllSse(): void {
  for (const s of [...open]) s.close();
}
