/** Small helpers shared by the views: formatting, state chips, and a polling hook that backs off. */
import { Poll } from '@lumino/polling';
import * as React from 'react';

import { ApiError, JobState } from './api';

/** What every view gets from the panel: whether it is on screen (polls stand by when it is not). */
export interface IViewContext {
  isVisible: () => boolean;
}

export function formatDuration(start: number | null, end: number | null): string {
  if (!start) {
    return '';
  }
  const seconds = Math.max(0, Math.round(((end ?? Date.now()) - start) / 1000));
  if (seconds < 60) {
    return `${seconds}s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m}m ${seconds % 60}s`;
  }
  const h = Math.floor(m / 60);
  return h < 24 ? `${h}h ${m % 60}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function formatTime(ms: number | null): string {
  return ms ? new Date(ms).toLocaleString() : '';
}

export function StateChip(props: { state: JobState | string }): JSX.Element {
  return <span className={`oxp-state oxp-state-${props.state.toLowerCase()}`}>{props.state}</span>;
}

export function ErrorBox(props: { error: unknown; prefix?: string }): JSX.Element | null {
  if (!props.error) {
    return null;
  }
  const e = props.error as ApiError;
  return (
    <div className="oxp-error" role="alert">
      {props.prefix ? `${props.prefix}: ` : ''}
      {e.message ?? String(props.error)}
    </div>
  );
}

/** Shown by a view whose server route is missing (an older server, or the feature not installed). */
export function NotAvailable(props: { what: string; route: string }): JSX.Element {
  return (
    <div className="oxp-notice" role="status">
      {props.what} is not available on this server (<code>{props.route}</code> is not one of its routes).
    </div>
  );
}

/**
 * Runs `tick` every `interval` ms while the view is visible and the tab is shown; an error backs off
 * (Poll's own backoff), and so do ticks that report no change (`tick` resolves false): the interval
 * doubles up to `max`, and any change or `refresh()` brings it back.
 */
export function usePoll(
  tick: () => Promise<boolean>,
  ctx: IViewContext,
  deps: React.DependencyList,
  interval = 2000,
  max = 30000
): { refresh: () => void } {
  const pollRef = React.useRef<Poll | null>(null);
  const tickRef = React.useRef(tick);
  tickRef.current = tick;
  React.useEffect(() => {
    let idle = 0;
    const poll = new Poll({
      auto: true,
      factory: async () => {
        const changed = await tickRef.current();
        idle = changed ? 0 : idle + 1;
        const next = Math.min(max, interval * 2 ** Math.min(idle, 4));
        if (poll.frequency.interval !== next) {
          poll.frequency = { ...poll.frequency, interval: next };
        }
      },
      frequency: { interval, backoff: true, max },
      standby: () => (document.hidden || !ctx.isVisible() ? true : false),
      name: 'openxpu'
    });
    pollRef.current = poll;
    return () => {
      pollRef.current = null;
      poll.dispose();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return {
    refresh: () => {
      const poll = pollRef.current;
      if (poll && !poll.isDisposed) {
        poll.frequency = { ...poll.frequency, interval };
        void poll.refresh();
      }
    }
  };
}

/** A stable JSON fingerprint, to tell a changed answer from the same one. */
export function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
