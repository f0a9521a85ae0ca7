/** Status-bar item: my running and waiting jobs, refreshed with backoff; a click opens the panel. */
import { Poll } from '@lumino/polling';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { OpenXPUClient } from './api';

export class JobsStatus extends ReactWidget {
  private _running = 0;
  private _waiting = 0;
  private _poll: Poll;

  constructor(
    private readonly client: OpenXPUClient,
    private readonly me: () => Promise<string>,
    private readonly onClick: () => void
  ) {
    super();
    this.addClass('oxp-status');
    let idle = 0;
    this._poll = new Poll({
      factory: async () => {
        const user = await this.me();
        const [running, waiting] = await Promise.all([
          this.client.listJobs({ username: user, state: ['RUNNING'], limit: 1 }),
          this.client.listJobs({ username: user, state: ['WAITING'], limit: 1 })
        ]);
        const changed = running.totalCount !== this._running || waiting.totalCount !== this._waiting;
        this._running = running.totalCount;
        this._waiting = waiting.totalCount;
        idle = changed ? 0 : idle + 1;
        this._poll.frequency = { ...this._poll.frequency, interval: Math.min(60000, 5000 * 2 ** Math.min(idle, 3)) };
        if (changed) {
          this.update();
        }
      },
      frequency: { interval: 5000, backoff: true, max: 60000 },
      standby: 'when-hidden',
      name: 'openxpu-status'
    });
  }

  /** Asks for a fresh count now (after a submit or a stop). */
  refresh(): void {
    this._poll.frequency = { ...this._poll.frequency, interval: 5000 };
    void this._poll.refresh();
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  protected render(): JSX.Element {
    return (
      <button
        className="oxp-status-button"
        onClick={this.onClick}
        title="OpenXPU: my running and waiting jobs"
        aria-label={`OpenXPU: ${this._running} running, ${this._waiting} waiting jobs`}
      >
        OpenXPU ▶ {this._running} · ⏸ {this._waiting}
      </button>
    );
  }
}
