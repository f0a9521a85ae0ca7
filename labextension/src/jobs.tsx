/** Jobs view: filters, server-side paging, live states, multi-select Stop. */
import * as React from 'react';

import { ApiError, FINAL_STATES, JOB_STATES, JobPage, OpenXPUClient } from './api';
import { ErrorBox, IViewContext, StateChip, formatDuration, same, usePoll } from './util';

const PAGE = 20;

export interface IJobsProps extends IViewContext {
  client: OpenXPUClient;
  me: string;
  onOpen: (key: string) => void;
}

export function JobsView(props: IJobsProps): JSX.Element {
  const { client } = props;
  const [state, setState] = React.useState('');
  const [vc, setVc] = React.useState('');
  const [user, setUser] = React.useState(props.me);
  const [keyword, setKeyword] = React.useState('');
  const [offset, setOffset] = React.useState(0);
  const [page, setPage] = React.useState<JobPage | null>(null);
  const [error, setError] = React.useState<unknown>(null);
  const [selected, setSelected] = React.useState<Set<string>>(new Set());
  const [busy, setBusy] = React.useState(false);
  const pageRef = React.useRef<JobPage | null>(null);

  const { refresh } = usePoll(
    async () => {
      try {
        const next = await client.listJobs({
          offset,
          limit: PAGE,
          state: state ? [state] : undefined,
          vc: vc.trim() || undefined,
          username: user.trim() || undefined,
          keyword: keyword.trim() || undefined
        });
        setError(null);
        const changed = !same(next, pageRef.current);
        if (changed) {
          pageRef.current = next;
          setPage(next);
        }
        // running jobs' durations move on, so a page with live jobs counts as changing
        return changed || next.data.some(j => !FINAL_STATES.includes(j.state));
      } catch (e) {
        setError(e);
        throw e;
      }
    },
    props,
    [offset, state, vc, user, keyword]
  );

  const keyOf = (j: { username: string; name: string }) => `${j.username}~${j.name}`;
  const toggle = (key: string) => {
    const next = new Set(selected);
    next.has(key) ? next.delete(key) : next.add(key);
    setSelected(next);
  };
  const stopSelected = async () => {
    setBusy(true);
    try {
      for (const key of selected) {
        await client.stopJob(key);
      }
      setSelected(new Set());
      setError(null);
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(false);
      refresh();
    }
  };
  const filterChanged = (set: (v: string) => void) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => {
    set(e.target.value);
    setOffset(0);
  };

  const jobs = page?.data ?? [];
  const total = page?.totalCount ?? 0;
  const allKeys = jobs.filter(j => !FINAL_STATES.includes(j.state)).map(keyOf);
  return (
    <div className="oxp-view oxp-jobs">
      <form className="oxp-filters" onSubmit={e => e.preventDefault()} aria-label="Job filters">
        <label>
          State
          <select value={state} onChange={filterChanged(setState)} aria-label="Filter by state">
            <option value="">any</option>
            {JOB_STATES.map(s => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          VC
          <input value={vc} onChange={filterChanged(setVc)} placeholder="any" aria-label="Filter by virtual cluster" />
        </label>
        <label>
          User
          <input value={user} onChange={filterChanged(setUser)} placeholder="anyone" aria-label="Filter by user" />
        </label>
        <label>
          Search
          <input value={keyword} onChange={filterChanged(setKeyword)} placeholder="name, user, VC" aria-label="Search jobs" />
        </label>
      </form>
      <div className="oxp-toolbar">
        <button
          className="jp-mod-styled jp-mod-warn"
          disabled={busy || selected.size === 0}
          onClick={stopSelected}
          aria-label={`Stop ${selected.size} selected jobs`}
        >
          Stop ({selected.size})
        </button>
        <button className="jp-mod-styled" onClick={refresh} aria-label="Refresh jobs">
          Refresh
        </button>
        <span className="oxp-count" aria-live="polite">
          {total} job{total === 1 ? '' : 's'}
        </span>
      </div>
      <ErrorBox error={error} />
      <div className="oxp-scroll">
      <table className="oxp-table" aria-label="Jobs">
        <thead>
          <tr>
            <th scope="col">
              <input
                type="checkbox"
                aria-label="Select all running jobs on this page"
                checked={allKeys.length > 0 && allKeys.every(k => selected.has(k))}
                onChange={e => setSelected(new Set(e.target.checked ? allKeys : []))}
              />
            </th>
            <th scope="col">Name</th>
            <th scope="col">State</th>
            <th scope="col">VC</th>
            <th scope="col">GPUs</th>
            <th scope="col">Duration</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map(j => {
            const key = keyOf(j);
            return (
              <tr key={key} data-job={key}>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Select ${key}`}
                    disabled={FINAL_STATES.includes(j.state)}
                    checked={selected.has(key)}
                    onChange={() => toggle(key)}
                  />
                </td>
                <td>
                  <button className="oxp-link" onClick={() => props.onOpen(key)} title={`Open ${key}`}>
                    {j.username === props.me ? j.name : key}
                  </button>
                </td>
                <td>
                  <StateChip state={j.state} />
                </td>
                <td>{j.virtualCluster}</td>
                <td>{j.totalGpuNumber}</td>
                <td>{formatDuration(j.launchedTime ?? j.submissionTime, j.completedTime)}</td>
              </tr>
            );
          })}
          {page && jobs.length === 0 ? (
            <tr>
              <td colSpan={6} className="oxp-empty">
                No jobs match.
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
      </div>
      <nav className="oxp-pager" aria-label="Job pages">
        <button className="jp-mod-styled" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Previous
        </button>
        <span>
          {total ? `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}` : ''}
        </span>
        <button className="jp-mod-styled" disabled={offset + PAGE >= total} onClick={() => setOffset(offset + PAGE)}>
          Next
        </button>
      </nav>
    </div>
  );
}
