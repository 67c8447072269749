/** A small line chart of the last values, with a text alternative. */
export function Sparkline(props: {
  values: number[];
  label: string;
  unit?: string;
  warn?: boolean;
}) {
  const { values, label, unit = '' } = props;
  const w = 120;
  const h = 28;
  const max = Math.max(1e-9, ...values);
  const last = values[values.length - 1] ?? 0;
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values
    .map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`)
    .join(' ');
  const text = `${label}: ${last < 10 ? last.toFixed(1) : Math.round(last)}${unit}, peak ${max < 10 ? max.toFixed(1) : Math.round(max)}${unit} over the last ${values.length} samples`;
  return (
    <svg
      class={props.warn && last > 0 ? 'spark warn' : 'spark'}
      width={w}
      height={h}
      viewBox={`0 0 ${w} ${h}`}
      role="img"
      aria-label={text}
    >
      <title>{text}</title>
      {values.length > 1 ? <polyline points={points} fill="none" stroke-width="1.5" /> : null}
    </svg>
  );
}
