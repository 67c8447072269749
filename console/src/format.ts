// Small display helpers.

export function num(n: number): string {
  return n.toLocaleString('en-US');
}

export function rate(n: number): string {
  if (n === 0) return '0';
  if (n < 10) return n.toFixed(1);
  return Math.round(n).toLocaleString('en-US');
}

export function ms(n: number | null): string {
  if (n === null) return '–';
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 120_000) return `${(n / 1000).toFixed(1)} s`;
  if (n < 7_200_000) return `${Math.round(n / 60_000)} min`;
  return `${(n / 3_600_000).toFixed(1)} h`;
}

/** "12 s ago" from an ISO time, against the snapshot's time (both from the service). */
export function ago(iso: string | null, now: string): string {
  if (!iso) return '–';
  const d = Date.parse(now) - Date.parse(iso);
  if (!Number.isFinite(d)) return iso;
  return d < 0 ? 'now' : `${ms(d)} ago`;
}

export function time(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString('en-GB');
}

/** A count that may be fractional (token buckets refill continuously). */
export function units(n: number): string {
  return Number.isInteger(n) ? num(n) : n.toFixed(1);
}
