import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseMultiHostUrl, TARGET_SESSION_ATTRS, ValidationError } from '../../src/index.js';

// libpq's multi-host URI rules, one row each: hosts, ports, routing parameters, the rest.
describe('parseMultiHostUrl', () => {
  const table: Array<[string, ReturnType<typeof summary>]> = [
    [
      'postgres://u:p@h1:5433,h2:5434/db',
      {
        hosts: 'h1:5433,h2:5434',
        user: 'u',
        password: 'p',
        database: 'db',
        tsa: undefined,
        lbh: undefined,
      },
    ],
    [
      'postgresql://h1,h2,h3/db',
      {
        hosts: 'h1:5432,h2:5432,h3:5432',
        user: undefined,
        password: undefined,
        database: 'db',
        tsa: undefined,
        lbh: undefined,
      },
    ],
    [
      'postgres://[::1]:6000,[fe80::2],h/db?target_session_attrs=read-write',
      {
        hosts: '::1:6000,fe80::2:5432,h:5432',
        user: undefined,
        password: undefined,
        database: 'db',
        tsa: 'read-write',
        lbh: undefined,
      },
    ],
    [
      'postgres://h1,h2/db?port=7000',
      {
        hosts: 'h1:7000,h2:7000',
        user: undefined,
        password: undefined,
        database: 'db',
        tsa: undefined,
        lbh: undefined,
      },
    ],
    [
      'postgres://x/db?host=a,b&port=1,2&load_balance_hosts=random',
      {
        hosts: 'a:1,b:2',
        user: undefined,
        password: undefined,
        database: 'db',
        tsa: undefined,
        lbh: 'random',
      },
    ],
    [
      'postgres://us%40er:p%3Aw@h/d%20b?load_balance_hosts=disable&target_session_attrs=prefer-standby',
      {
        hosts: 'h:5432',
        user: 'us@er',
        password: 'p:w',
        database: 'd b',
        tsa: 'prefer-standby',
        lbh: 'disable',
      },
    ],
    [
      'postgres://h1:1,h2:2?user=alice&dbname=app',
      {
        hosts: 'h1:1,h2:2',
        user: 'alice',
        password: undefined,
        database: 'app',
        tsa: undefined,
        lbh: undefined,
      },
    ],
    [
      'postgres://,h2/db',
      {
        hosts: 'localhost:5432,h2:5432',
        user: undefined,
        password: undefined,
        database: 'db',
        tsa: undefined,
        lbh: undefined,
      },
    ],
  ];
  function summary(u: ReturnType<typeof parseMultiHostUrl>) {
    return {
      hosts: u.hosts.map((h) => `${h.host}:${h.port}`).join(','),
      user: u.user,
      password: u.password,
      database: u.database,
      tsa: u.targetSessionAttrs,
      lbh: u.loadBalanceHosts,
    };
  }
  it.each(table)('%s', (url, expected) => {
    expect(summary(parseMultiHostUrl(url))).toEqual(expected);
  });

  it.each(TARGET_SESSION_ATTRS.map((v) => [v]))('accepts target_session_attrs=%s', (value) => {
    expect(
      parseMultiHostUrl(`postgres://a,b/db?target_session_attrs=${value}`).targetSessionAttrs,
    ).toBe(value);
  });

  it.each([
    ['mysql://h/db', /postgres/],
    ['postgres://h1,h2/db?target_session_attrs=readwrite', /target_session_attrs/],
    ['postgres://h1,h2/db?load_balance_hosts=yes', /load_balance_hosts/],
    ['postgres://h1:99999/db', /port/],
    ['postgres://h1:abc/db', /port/],
    ['postgres://h1,h2,h3/db?port=1,2', /3 hosts/],
    ['postgres://h/%zz', /percent/],
  ])('refuses %s', (url, message) => {
    expect(() => parseMultiHostUrl(url)).toThrow(ValidationError);
    expect(() => parseMultiHostUrl(url)).toThrow(message);
  });

  it('passes other parameters on, and builds a single-host URL per instance', () => {
    const u = parseMultiHostUrl(
      'postgres://u:p%40ss@h1:1,h2:2/db?sslmode=disable&application_name=my%20app&target_session_attrs=primary',
    );
    expect(u.params).toEqual({ sslmode: 'disable', application_name: 'my app' });
    expect(u.urlFor({ host: 'h2', port: 2 })).toBe(
      'postgres://u:p%40ss@h2:2/db?sslmode=disable&application_name=my%20app',
    );
    expect(
      parseMultiHostUrl('postgres://h1/db').urlFor({ host: '::1', port: 5 }, { user: 'pg' }),
    ).toBe('postgres://pg@[::1]:5/db');
  });

  it('round-trips any host list and never throws anything but ValidationError', () => {
    const host = fc.stringMatching(/^[a-z][a-z0-9.-]{0,20}$/);
    const hp = fc.record({ host, port: fc.integer({ min: 1, max: 65535 }) });
    fc.assert(
      fc.property(
        fc.array(hp, { minLength: 1, maxLength: 6 }),
        fc.constantFrom(...TARGET_SESSION_ATTRS),
        (hosts, tsa) => {
          const url = `postgres://${hosts.map((h) => `${h.host}:${h.port}`).join(',')}/db?target_session_attrs=${tsa}`;
          const u = parseMultiHostUrl(url);
          expect(u.hosts).toEqual(hosts);
          expect(u.targetSessionAttrs).toBe(tsa);
        },
      ),
    );
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          parseMultiHostUrl(`postgres://${s}`);
        } catch (err) {
          expect(err).toBeInstanceOf(ValidationError);
        }
      }),
    );
  });
});
