/** The OpenXPU side panel: one widget whose tabs are the portal's pages. */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { MarketplaceItem, OpenXPUClient } from './api';
import { DetailView } from './detail';
import { JobsView } from './jobs';
import { parseDoc, dumpDoc } from './jobspec';
import { MarketplaceView } from './marketplace';
import { SubmitView } from './submit';
import { VcsView } from './vcs';

export type Tab = 'jobs' | 'vcs' | 'submit' | 'marketplace';
const TABS: [Tab, string][] = [
  ['jobs', 'Jobs'],
  ['vcs', 'Clusters'],
  ['submit', 'Submit'],
  ['marketplace', 'Marketplace']
];

export interface IPanelOptions {
  client: OpenXPUClient;
  activeNotebook: () => string | null;
  openNotebook: (item: MarketplaceItem) => Promise<void>;
}

/** A job name that has not been used yet: names are never reused, so a clone gets a suffix. */
export function cloneName(name: string): string {
  const m = /^(.*)-clone(\d*)$/.exec(name);
  return m ? `${m[1]}-clone${Number(m[2] || 1) + 1}` : `${name}-clone`;
}

export class OpenXPUPanel extends ReactWidget {
  private _tab: Tab = 'jobs';
  private _job: string | null = null;
  private _initial: { yaml: string; seq: number } | null = null;
  private _me = '';
  private _ready = false;

  constructor(readonly options: IPanelOptions) {
    super();
    this.addClass('oxp-panel');
    options.client.info().then(
      info => {
        this._me = info.user;
        this._ready = true;
        this.update();
      },
      () => {
        this._ready = true;
        this.update();
      }
    );
  }

  get tab(): Tab {
    return this._tab;
  }

  /** Shows a tab (closing the job detail). */
  showTab(tab: Tab): void {
    this._tab = tab;
    this._job = null;
    this.update();
  }

  openJob(key: string): void {
    this._tab = 'jobs';
    this._job = key;
    this.update();
  }

  /** Opens the submit form with a document (Clone, marketplace, a YAML file, a converted notebook). */
  openSubmit(yamlText: string): void {
    this._initial = { yaml: yamlText, seq: (this._initial?.seq ?? 0) + 1 };
    this.showTab('submit');
  }

  private _clone = (yamlText: string) => {
    try {
      const doc = parseDoc(yamlText);
      doc.name = cloneName(String(doc.name ?? 'job'));
      this.openSubmit(dumpDoc(doc));
    } catch {
      this.openSubmit(yamlText);
    }
  };

  protected render(): JSX.Element {
    const { client } = this.options;
    const ctx = { isVisible: () => this.isVisible };
    let body: JSX.Element;
    if (this._tab === 'jobs' && this._job) {
      body = (
        <DetailView
          {...ctx}
          key={this._job}
          client={client}
          jobKey={this._job}
          onBack={() => this.showTab('jobs')}
          onClone={this._clone}
        />
      );
    } else if (this._tab === 'jobs') {
      body = this._ready ? <JobsView {...ctx} client={client} me={this._me} onOpen={k => this.openJob(k)} /> : <div />;
    } else if (this._tab === 'vcs') {
      body = <VcsView {...ctx} client={client} me={this._me} />;
    } else if (this._tab === 'submit') {
      body = (
        <SubmitView
          client={client}
          initial={this._initial}
          onSubmitted={k => this.openJob(k)}
          activeNotebook={this.options.activeNotebook}
        />
      );
    } else {
      body = <MarketplaceView client={client} onUse={y => this.openSubmit(y)} onOpenNotebook={this.options.openNotebook} />;
    }
    return (
      <div className="oxp-root">
        <header className="oxp-header">
          <h1>OpenXPU</h1>
          <div role="tablist" aria-label="OpenXPU views" className="oxp-tabs">
            {TABS.map(([id, label]) => (
              <button
                key={id}
                role="tab"
                id={`oxp-tab-${id}`}
                aria-selected={this._tab === id}
                aria-controls="oxp-tabpanel"
                className={`oxp-tab${this._tab === id ? ' oxp-active' : ''}`}
                onClick={() => this.showTab(id)}
              >
                {label}
              </button>
            ))}
          </div>
        </header>
        <main id="oxp-tabpanel" role="tabpanel" aria-labelledby={`oxp-tab-${this._tab}`} className="oxp-body">
          {body}
        </main>
      </div>
    );
  }
}
