// iidy's README, replayed request by request: both curl sessions (text and JSON) are copied
// verbatim from github.com/manniwood/iidy README.md (commit 09a87a9), each `$ curl ...` command
// is turned into the request curl sends, and the reply must be the one printed under it, with the
// status iidy's handlers give (handlers/handlers.go at the same commit).
import { beforeEach, describe, expect, it } from 'vitest';
import { useTestService } from '../support/service.js';

const service = useTestService();

const TEXT_SESSION = `
$ curl localhost:8080/iidy/v1/lists/downloads/a.txt
Not found.

$ curl -X POST localhost:8080/iidy/v1/lists/downloads/a.txt
ADDED 1

$ curl localhost:8080/iidy/v1/lists/downloads/a.txt
0

$ curl -X POST localhost:8080/iidy/v1/increment/lists/downloads/a.txt
INCREMENTED 1

$ curl localhost:8080/iidy/v1/lists/downloads/a.txt
1

$ curl -X DELETE localhost:8080/iidy/v1/lists/downloads/a.txt
DELETED 1

$ curl localhost:8080/iidy/v1/lists/downloads/a.txt
Not found.

$ curl -X POST localhost:8080/iidy/v1/batch/lists/downloads -d '
b.txt
c.txt
d.txt
e.txt
f.txt
g.txt
h.txt
i.txt
'
ADDED 8

$ curl localhost:8080/iidy/v1/batch/lists/downloads?count=2
b.txt 0
c.txt 0

$ curl "localhost:8080/iidy/v1/batch/lists/downloads?count=2&after_id=c.txt"
d.txt 0
e.txt 0

$ curl "localhost:8080/iidy/v1/batch/lists/downloads?count=4&after_id=e.txt"
f.txt 0
g.txt 0
h.txt 0
i.txt 0

$ curl -X POST localhost:8080/iidy/v1/increment/batch/lists/downloads -d '
b.txt
c.txt
d.txt
e.txt
'
INCREMENTED 4

$ curl localhost:8080/iidy/v1/batch/lists/downloads?count=100
b.txt 1
c.txt 1
d.txt 1
e.txt 1
f.txt 0
g.txt 0
h.txt 0
i.txt 0

$ curl -X DELETE localhost:8080/iidy/v1/batch/lists/downloads -d '
d.txt
e.txt
f.txt
g.txt
'
DELETED 4

$ curl localhost:8080/iidy/v1/batch/lists/downloads?count=100
b.txt 1
c.txt 1
h.txt 0
i.txt 0
`;

const JSON_SESSION = `
$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/lists/downloads/a.txt
{"error":"Not found."}

$ curl -X POST -H "Content-type: application/json" localhost:8080/iidy/v1/lists/downloads/a.txt
{"added":1}

$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/lists/downloads/a.txt
{"item":"a.txt","attempts":0}

$ curl -X POST -H "Content-type: application/json" localhost:8080/iidy/v1/increment/lists/downloads/a.txt
{"incremented":1}

$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/lists/downloads/a.txt
{"item":"a.txt","attempts":1}

$ curl -X DELETE -H "Content-type: application/json" localhost:8080/iidy/v1/lists/downloads/a.txt
{"deleted":1}

$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/lists/downloads/a.txt
{"error":"Not found."}

$ curl -X POST -H "Content-type: application/json" localhost:8080/iidy/v1/batch/lists/downloads -d '
{"items":[
"b.txt",
"c.txt",
"d.txt",
"e.txt",
"f.txt",
"g.txt",
"h.txt",
"i.txt"]}
'
{"added":8}

$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/batch/lists/downloads?count=2
{"listentries":[
{"item":"b.txt","attempts":0},
{"item":"c.txt","attempts":0}]}

$ curl -H "Content-type: application/json" "localhost:8080/iidy/v1/batch/lists/downloads?count=2&after_id=c.txt"
{"listentries":[
{"item":"d.txt","attempts":0},
{"item":"e.txt","attempts":0}]}

$ curl -H "Content-type: application/json" "localhost:8080/iidy/v1/batch/lists/downloads?count=4&after_id=e.txt"
{"listentries":[
{"item":"f.txt","attempts":0},
{"item":"g.txt","attempts":0},
{"item":"h.txt","attempts":0},
{"item":"i.txt","attempts":0}]}

$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/increment/batch/lists/downloads -d '
{"items":[
"b.txt",
"c.txt",
"d.txt",
"e.txt"]}
'
{"incremented":4}

$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/batch/lists/downloads?count=100
{"listentries":[
{"item":"b.txt","attempts":1},
{"item":"c.txt","attempts":1},
{"item":"d.txt","attempts":1},
{"item":"e.txt","attempts":1},
{"item":"f.txt","attempts":0},
{"item":"g.txt","attempts":0},
{"item":"h.txt","attempts":0},
{"item":"i.txt","attempts":0}]}

$ curl -X DELETE -H "Content-type: application/json" localhost:8080/iidy/v1/batch/lists/downloads -d '
{"items":[
"d.txt",
"e.txt",
"f.txt",
"g.txt"]}
'
{"deleted":4}

$ curl -H "Content-type: application/json" localhost:8080/iidy/v1/batch/lists/downloads?count=100
{"listentries":[
{"item":"b.txt","attempts":1},
{"item":"c.txt","attempts":1},
{"item":"h.txt","attempts":0},
{"item":"i.txt","attempts":0}]}
`;

interface Step {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
  output: string;
}

/** Splits a console session into `$ curl` steps: the request curl sends and the printed reply. */
function parseSession(session: string): Step[] {
  const steps: Step[] = [];
  let rest = session.trimStart();
  while (rest.startsWith('$ ')) {
    const { words, end } = shellWords(rest, 2);
    const next = rest.indexOf('\n$ ', end);
    const output = rest.slice(end, next < 0 ? undefined : next).trim();
    rest = next < 0 ? '' : rest.slice(next + 1);
    expect(words[0]).toBe('curl');
    let method: string | undefined;
    let url = '';
    let body: string | undefined;
    const headers: Record<string, string> = {};
    for (let i = 1; i < words.length; i++) {
      const w = words[i]!;
      if (w === '-X') method = words[++i]!;
      else if (w === '-H') {
        const [name, ...value] = words[++i]!.split(':');
        headers[name!.toLowerCase()] = value.join(':').trim();
      } else if (w === '-d') body = words[++i]!;
      else url = w;
    }
    // curl -d posts the data as a form unless a Content-Type is given.
    if (body !== undefined) headers['content-type'] ??= 'application/x-www-form-urlencoded';
    steps.push({
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      path: url.replace(/^localhost:8080/, ''),
      headers,
      body,
      output,
    });
  }
  return steps;
}

/** Shell words of one command line starting at `from`, quotes spanning lines; `end` is past its newline. */
function shellWords(text: string, from: number): { words: string[]; end: number } {
  const words: string[] = [];
  let word: string | undefined;
  let i = from;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') break;
    if (c === ' ') {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === "'" || c === '"') {
      const close = text.indexOf(c, i + 1);
      word = (word ?? '') + text.slice(i + 1, close);
      i = close;
    } else word = (word ?? '') + c;
  }
  if (word !== undefined) words.push(word);
  return { words, end: i + 1 };
}

/** The status iidy's handlers answer for a step. */
function iidyStatus(step: Step): number {
  if (/Not found\./.test(step.output)) return 404;
  return step.method === 'POST' && !step.path.startsWith('/iidy/v1/increment/') ? 201 : 200;
}

beforeEach(async () => {
  await service.db.pool.query(`DELETE FROM pgcoord.list_items WHERE list = 'downloads'`);
});

describe("iidy's README curl sessions", () => {
  for (const [name, session, json] of [
    ['text', TEXT_SESSION, false],
    ['JSON', JSON_SESSION, true],
  ] as const) {
    it(`gets iidy's reply to every ${name} request`, async () => {
      const steps = parseSession(session);
      expect(steps).toHaveLength(15);
      for (const step of steps) {
        const res = await fetch(`${service.base}${step.path}`, {
          method: step.method,
          headers: step.headers,
          body: step.body,
        });
        const text = await res.text();
        const what = `${step.method} ${step.path}`;
        expect({ what, status: res.status }).toEqual({ what, status: iidyStatus(step) });
        if (json) {
          expect(res.headers.get('content-type'), what).toMatch(/^application\/json/);
          expect({ what, reply: JSON.parse(text) as unknown }).toEqual({
            what,
            reply: JSON.parse(step.output),
          });
        } else {
          expect({ what, reply: text }).toEqual({ what, reply: `${step.output}\n` });
        }
      }
    });
  }
});
