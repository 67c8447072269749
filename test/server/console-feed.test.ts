// The page's reader of the event stream (console/src/sse-parser.ts), fed the service's framing cut
// at arbitrary points: every event comes out whole, once, in order.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SseParser, parseBlock } from '../../console/src/sse-parser.js';

/** An event framed as src/server/sse.ts writes it, with the given line ending. */
function frame(e: { event: string; data: string }, eol: string): string {
  let out = `event: ${e.event}${eol}`;
  for (const line of e.data.split(/\r\n|\r|\n/)) out += `data: ${line}${eol}`;
  return out + eol;
}

const eventArb = fc.record({
  event: fc.constantFrom('history', 'snapshot', 'notification', 'ready'),
  data: fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(/\r\n|\r/g, '\n')),
});

describe('the console’s event-stream reader', () => {
  it('yields every event whole, whatever the chunk boundaries and line endings', () => {
    fc.assert(
      fc.property(
        fc.array(eventArb, { maxLength: 8 }),
        fc.constantFrom('\n', '\r\n', '\r'),
        fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 20 }),
        (events, eol, cuts) => {
          const text = ': subscribed\nretry: 1000\n\n' + events.map((e) => frame(e, eol)).join('');
          const parser = new SseParser();
          const got = [];
          let at = 0;
          for (let i = 0; at < text.length; i++) {
            const size = cuts[i % cuts.length]!;
            got.push(...parser.push(text.slice(at, at + size)));
            at += size;
          }
          got.push(...parser.end());
          // An event with empty data still has one `data:` line: it is an event.
          expect(got).toEqual(events);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('ignores comments and unknown fields, and takes a missing space after the colon', () => {
    expect(parseBlock(': ping')).toBeUndefined();
    expect(parseBlock('id: 3\nevent:snapshot\ndata:{"a":1}\nfoo: bar')).toEqual({
      event: 'snapshot',
      data: '{"a":1}',
    });
    expect(parseBlock('data: a\ndata:  b')).toEqual({ event: 'message', data: 'a\n b' });
  });
});
