/**
 * The OpenXPU JupyterLab extension: the side panel (jobs, detail, clusters, submit, marketplace), a
 * notebook toolbar button, "Run as OpenXPU job" in the file browser, palette commands and a status item.
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';

import { ApiError, MarketplaceItem, OpenXPUClient } from './api';
import { openxpuIcon } from './icon';
import { OpenXPUPanel, Tab } from './panel';
import { JobsStatus } from './statusbar';

const PLUGIN_ID = 'openxpu:plugin';
const CATEGORY = 'OpenXPU';

export namespace CommandIDs {
  export const open = 'openxpu:open';
  export const jobs = 'openxpu:show-jobs';
  export const clusters = 'openxpu:show-clusters';
  export const submit = 'openxpu:show-submit';
  export const marketplace = 'openxpu:show-marketplace';
  export const runNotebook = 'openxpu:run-notebook';
  export const runFile = 'openxpu:run-file';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'OpenXPU: OpenPAI-style jobs, virtual clusters, submit and marketplace in a side panel.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, INotebookTracker, IDefaultFileBrowser, IStatusBar, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    browser: IDefaultFileBrowser | null,
    statusBar: IStatusBar | null
  ) => {
    const client = new OpenXPUClient(app.serviceManager.serverSettings);
    const { commands, shell } = app;

    const activeNotebook = (): string | null => notebooks?.currentWidget?.context.path ?? null;
    const openNotebook = async (item: MarketplaceItem) => {
      const base = (item.name || 'template').replace(/[^A-Za-z0-9_-]+/g, '-');
      let path = `${base}.ipynb`;
      for (let i = 1; await app.serviceManager.contents.get(path, { content: false }).then(() => true, () => false); i++) {
        path = `${base}-${i}.ipynb`;
      }
      const content = typeof item.notebook === 'string' ? JSON.parse(item.notebook) : item.notebook;
      await app.serviceManager.contents.save(path, { type: 'notebook', format: 'json', content });
      await commands.execute('docmanager:open', { path });
    };

    const panel = new OpenXPUPanel({ client, activeNotebook, openNotebook });
    panel.id = 'openxpu-panel';
    panel.title.icon = openxpuIcon;
    panel.title.caption = 'OpenXPU jobs';
    shell.add(panel, 'left', { rank: 300 });
    restorer?.add(panel, 'openxpu-panel');

    const reveal = (tab?: Tab) => {
      if (tab) {
        panel.showTab(tab);
      }
      shell.activateById(panel.id);
    };

    /** Converts a notebook server side and submits it; a conversion or validation error opens the form. */
    const runNotebook = async (path: string) => {
      let yamlText: string;
      try {
        yamlText = await client.convertNotebook(path);
      } catch (e) {
        const message =
          e instanceof ApiError && e.notAvailable
            ? 'Notebook-to-job conversion is not available on this server.'
            : `Could not convert ${path}: ${(e as Error).message}`;
        Notification.error(message, { autoClose: 8000 });
        return;
      }
      await runYaml(yamlText, path);
    };
    const runYaml = async (yamlText: string, source: string) => {
      try {
        const key = await client.submitJob(yamlText);
        Notification.success(`Submitted ${source} as ${key}`, { autoClose: 5000 });
        panel.openJob(key);
        status?.refresh();
      } catch (e) {
        Notification.error(`${source}: ${(e as Error).message}`, { autoClose: 8000 });
        panel.openSubmit(yamlText);
      }
      reveal();
    };

    commands.addCommand(CommandIDs.open, {
      label: 'Open the OpenXPU panel',
      caption: 'Show the OpenXPU side panel',
      icon: openxpuIcon,
      execute: () => reveal()
    });
    const tabs: [string, Tab, string][] = [
      [CommandIDs.jobs, 'jobs', 'Show my jobs'],
      [CommandIDs.clusters, 'vcs', 'Show virtual clusters'],
      [CommandIDs.submit, 'submit', 'Submit a job'],
      [CommandIDs.marketplace, 'marketplace', 'Browse the marketplace']
    ];
    for (const [id, tab, label] of tabs) {
      commands.addCommand(id, { label, execute: () => reveal(tab) });
    }
    commands.addCommand(CommandIDs.runNotebook, {
      label: 'Run as OpenXPU job',
      caption: 'Run this notebook as an OpenXPU job',
      icon: openxpuIcon,
      isEnabled: () => !!notebooks?.currentWidget,
      execute: async () => {
        const current = notebooks?.currentWidget;
        if (!current) {
          return;
        }
        if (current.context.model.dirty) {
          await current.context.save();
        }
        await runNotebook(current.context.path);
      }
    });
    commands.addCommand(CommandIDs.runFile, {
      label: 'Run as OpenXPU job',
      caption: 'Submit the selected notebook or job YAML to OpenXPU',
      icon: openxpuIcon,
      isVisible: () => {
        const item = browser?.selectedItems().next();
        const name = item && !item.done ? item.value.name : '';
        return /\.(ipynb|ya?ml)$/i.test(name);
      },
      execute: async () => {
        const item = browser?.selectedItems().next();
        if (!item || item.done) {
          return;
        }
        const path = item.value.path;
        if (PathExt.extname(path).toLowerCase() === '.ipynb') {
          await runNotebook(path);
        } else {
          const model = await app.serviceManager.contents.get(path, { content: true, format: 'text', type: 'file' });
          await runYaml(String(model.content), path);
        }
      }
    });
    for (const selector of [
      '.jp-DirListing-item[data-file-type="notebook"]',
      '.jp-DirListing-item[data-file-type="yaml"]'
    ]) {
      app.contextMenu.addItem({ command: CommandIDs.runFile, selector, rank: 60 });
    }
    if (palette) {
      for (const command of [CommandIDs.open, ...tabs.map(t => t[0]), CommandIDs.runNotebook]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    let status: JobsStatus | null = null;
    if (statusBar) {
      let me: Promise<string> | null = null;
      status = new JobsStatus(
        client,
        () => (me ??= client.info().then(i => i.user)),
        () => reveal('jobs')
      );
      statusBar.registerStatusItem('openxpu:status', { item: status, align: 'left', rank: 50 });
    }
  }
};

export default plugin;
