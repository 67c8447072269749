// The event-stream format (text/event-stream), parsed without the DOM: the page reads its
// streams with fetch() so that the token can travel in a header.

export interface SseEvent {
  event: string;
  data: string;
}

/** Splits a text/event-stream, fed in chunks cut anywhere, into its events. */
export class SseParser {
  private buffer = '';
  private lines: string[] = [];

  /** Adds a chunk; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const events: SseEvent[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A CR that ends the chunk may be the first half of a CRLF: wait for what follows.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (line !== '') {
        this.lines.push(line);
        continue;
      }
      const e = parseBlock(this.lines.join('\n'));
      this.lines = [];
      if (e) events.push(e);
    }
    return events;
  }

  /** The stream ended: a CR held back as a possible half CRLF ends its line after all. */
  end(): SseEvent[] {
    return this.buffer.endsWith('\r') ? this.push('\n') : [];
  }
}

/** One SSE event block (lines of `field: value`); comments and ids are ignored here. */
export function parseBlock(block: string): SseEvent | undefined {
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return data.length === 0 ? undefined : { event, data: data.join('\n') };
}
