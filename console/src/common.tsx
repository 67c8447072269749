import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError } from './feed.js';

export type Notify = (message: string, kind?: 'ok' | 'error') => void;

/** A titled region of the page, reachable from the navigation. */
export function Panel(props: {
  id: string;
  title: string;
  children: ComponentChildren;
  problem?: string | undefined;
}) {
  return (
    <section class="panel" id={props.id} aria-labelledby={`${props.id}-title`}>
      <h2 id={`${props.id}-title`} tabIndex={-1}>
        {props.title}
      </h2>
      {props.problem ? (
        <p class="problem" role="status">
          Could not read this: {props.problem}
        </p>
      ) : null}
      {props.children}
    </section>
  );
}

/** Scrolls sideways on a narrow screen instead of squeezing the columns. */
export function TableWrap(props: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-wrap" role="region" aria-label={props.label} tabIndex={0}>
      {props.children}
    </div>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <p class="empty">{props.children}</p>;
}

/** Runs a write, keeps its button busy meanwhile, and says how it went. */
export function useAction(notify: Notify) {
  const [busy, setBusy] = useState<string | null>(null);
  const run = async (id: string, fn: () => Promise<string>) => {
    setBusy(id);
    try {
      notify(await fn(), 'ok');
    } catch (err) {
      notify(describeError(err), 'error');
    } finally {
      setBusy(null);
    }
  };
  return { busy, run };
}

export function describeError(err: unknown): string {
  if (err instanceof ApiError) return `${err.status} ${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/** A destructive button that asks once more in place (no modal dialog). */
export function ConfirmButton(props: {
  label: string;
  confirmLabel: string;
  busy: boolean;
  onConfirm: () => void;
  describedBy?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button
        type="button"
        class="danger"
        disabled={props.busy}
        onClick={() => setAsking(true)}
        aria-describedby={props.describedBy}
      >
        {props.label}
      </button>
    );
  }
  return (
    <span class="confirm">
      <button
        type="button"
        class="danger"
        ref={(el) => el?.focus()}
        onClick={() => {
          setAsking(false);
          props.onConfirm();
        }}
      >
        {props.confirmLabel}
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
