/** Job detail: state, why it waits, per-role tasks, log tail with follow, exit diagnostics, config. */
import * as React from 'react';

import { ApiError, FINAL_STATES, JobDetail, OpenXPUClient, TaskStatus } from './api';
import { ErrorBox, IViewContext, StateChip, formatDuration, formatTime, same, usePoll } from './util';

export interface IDetailProps extends IViewContext {
  client: OpenXPUClient;
  jobKey: string;
  onBack: () => void;
  onClone: (yamlText: string) => void;
}

interface TaskRef {
  role: string;
  task: TaskStatus;
}

const LOG_MAX_CHARS = 200 * 1024;

/** Splits "reason (queue position 3)" into the reason and the position. */
export function splitWaitReason(text: string | null): { reason: string; position: number | null } {
  if (!text) {
    return { reason: '', position: null };
  }
  const m = /^(.*?)\s*\(queue position (\d+)\)\s*$/.exec(text);
  return m ? { reason: m[1], position: Number(m[2]) } : { reason: text, position: null };
}

export function DetailView(props: IDetailProps): JSX.Element {
  const { client, jobKey } = props;
  const [job, setJob] = React.useState<JobDetail | null>(null);
  const [error, setError] = React.useState<unknown>(null);
  const [config, setConfig] = React.useState<string | null>(null);
  const [actionError, setActionError] = React.useState<unknown>(null);
  const jobRef = React.useRef<JobDetail | null>(null);

  const { refresh } = usePoll(
    async () => {
      try {
        const next = await client.getJob(jobKey);
        setError(null);
        const changed = !same(next, jobRef.current);
        if (changed) {
          jobRef.current = next;
          setJob(next);
        }
        return changed || !FINAL_STATES.includes(next.jobStatus.state);
      } catch (e) {
        setError(e);
        throw e;
      }
    },
    props,
    [jobKey],
    1500
  );

  React.useEffect(() => {
    setConfig(null);
    client.getJobConfig(jobKey).then(setConfig, () => setConfig(null));
  }, [jobKey]);

  const stop = async () => {
    try {
      await client.stopJob(jobKey);
      setActionError(null);
    } catch (e) {
      setActionError(e);
    }
    refresh();
  };
  const clone = async () => {
    try {
      props.onClone(config ?? (await client.getJobConfig(jobKey)));
    } catch (e) {
      setActionError(e);
    }
  };

  const status = job?.jobStatus;
  const tasks: TaskRef[] = job
    ? Object.entries(job.taskRoles).flatMap(([role, r]) => r.taskStatuses.map(task => ({ role, task })))
    : [];
  const wait = splitWaitReason(status?.waitReason ?? null);
  const spec = status?.appExitSpec;
  return (
    <div className="oxp-view oxp-detail">
      <div className="oxp-toolbar">
        <button className="jp-mod-styled" onClick={props.onBack} aria-label="Back to the job list">
          ← Jobs
        </button>
        <h2 className="oxp-title">{jobKey}</h2>
      </div>
      <ErrorBox error={error} />
      {status ? (
        <>
          <dl className="oxp-facts">
            <dt>State</dt>
            <dd>
              <StateChip state={status.state} /> <span className="oxp-substate">{status.subState}</span>
            </dd>
            <dt>VC</dt>
            <dd>{status.virtualCluster}</dd>
            <dt>Priority</dt>
            <dd>{job?.jobPriority ?? ''}</dd>
            <dt>Retries</dt>
            <dd>
              {status.retries} (user {status.retryDetails.user}, platform {status.retryDetails.platform})
            </dd>
            <dt>Submitted</dt>
            <dd>{formatTime(status.submissionTime)}</dd>
            <dt>Duration</dt>
            <dd>{formatDuration(status.launchedTime, status.completedTime)}</dd>
            {status.appExitCode !== null ? (
              <>
                <dt>Exit code</dt>
                <dd>{status.appExitCode}</dd>
              </>
            ) : null}
          </dl>
          {status.state === 'WAITING' && wait.reason ? (
            <div className="oxp-notice oxp-waiting" role="status">
              <strong>Why is it waiting?</strong> {wait.reason}
              {wait.position !== null ? <span className="oxp-queue"> · queue position {wait.position}</span> : null}
            </div>
          ) : null}
          {spec && spec.type !== 'USER_SUCCESS' ? (
            <div className="oxp-hint" role="note" aria-label="Exit diagnostics">
              <div>
                <strong>
                  Exit {spec.code} · {spec.phrase}
                </strong>{' '}
                ({spec.type})
              </div>
              {spec.reason ? <div>Reason: {spec.reason}</div> : null}
              {spec.solution?.length ? (
                <div>
                  Solution:
                  <ul>
                    {spec.solution.map((s, i) => (
                      <li key={i}>{s}</li>
                    ))}
                  </ul>
                </div>
              ) : null}
              {status.appExitMessages.launcher ? <div>{status.appExitMessages.launcher}</div> : null}
              {status.appExitDiagnostics ? <pre className="oxp-diagnostics">{status.appExitDiagnostics}</pre> : null}
            </div>
          ) : null}
          <div className="oxp-toolbar">
            <button
              className="jp-mod-styled jp-mod-warn"
              disabled={FINAL_STATES.includes(status.state) || status.state === 'STOPPING'}
              onClick={stop}
            >
              Stop
            </button>
            <button className="jp-mod-styled" onClick={clone}>
              Clone
            </button>
          </div>
          <ErrorBox error={actionError} />
          <h3>Tasks</h3>
          <div className="oxp-scroll">
          <table className="oxp-table" aria-label="Tasks">
            <thead>
              <tr>
                <th scope="col">Role</th>
                <th scope="col">#</th>
                <th scope="col">State</th>
                <th scope="col">Node</th>
                <th scope="col">Ports</th>
                <th scope="col">GPUs</th>
                <th scope="col">Exit</th>
              </tr>
            </thead>
            <tbody>
              {tasks.map(({ role, task }) => (
                <tr key={`${role}-${task.taskIndex}`}>
                  <td>{role}</td>
                  <td>{task.taskIndex}</td>
                  <td>
                    <StateChip state={task.taskState} />
                  </td>
                  <td>{task.containerNodeName ?? ''}</td>
                  <td>
                    {Object.entries(task.containerPorts ?? {})
                      .map(([k, v]) => `${k}:${v}`)
                      .join(' ')}
                  </td>
                  <td>{task.containerGpus ?? ''}</td>
                  <td title={task.containerExitDiagnostics ?? ''}>{task.containerExitCode ?? ''}</td>
                </tr>
              ))}
              {tasks.length === 0 ? (
                <tr>
                  <td colSpan={7} className="oxp-empty">
                    No tasks yet (the job has not been placed).
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
      </div>
          <LogViewer client={client} tasks={tasks} isVisible={props.isVisible} />
          <details className="oxp-config">
            <summary>Job config (secrets masked)</summary>
            <pre aria-label="Job config">{config ?? ''}</pre>
          </details>
        </>
      ) : null}
    </div>
  );
}

function LogViewer(props: { client: OpenXPUClient; tasks: TaskRef[] } & IViewContext): JSX.Element {
  const { client, tasks } = props;
  // a task's log exists once it has launched (before that the server answers 404 "not available yet")
  const started = tasks.filter(t => t.task.containerLog && t.task.launchedTime);
  const [which, setWhich] = React.useState('');
  const [stream, setStream] = React.useState<'stdout' | 'stderr'>('stdout');
  const [follow, setFollow] = React.useState(true);
  const [text, setText] = React.useState('');
  const [error, setError] = React.useState<unknown>(null);
  const offsetRef = React.useRef<number | null>(null);
  const preRef = React.useRef<HTMLPreElement>(null);

  const current = started.find(t => `${t.role}-${t.task.taskIndex}` === which) ?? started[0];
  const logPath = current?.task.containerLog ?? '';
  const live = current ? !FINAL_STATES.includes(current.task.taskState) : false;

  React.useEffect(() => {
    offsetRef.current = null;
    setText('');
  }, [logPath, stream]);

  usePoll(
    async () => {
      if (!logPath || (offsetRef.current !== null && !follow)) {
        return false;
      }
      try {
        const chunk = await client.readLog(logPath, stream, offsetRef.current);
        offsetRef.current = chunk.offset;
        setError(null);
        if (chunk.text) {
          setText(prev => (prev + chunk.text).slice(-LOG_MAX_CHARS));
          return true;
        }
        return live;
      } catch (e) {
        if (e instanceof ApiError && e.code === 'NoTaskLogError') {
          return true; // not written yet: try again soon
        }
        setError(e);
        throw e;
      }
    },
    props,
    [logPath, stream, follow, live],
    1000,
    8000
  );

  React.useEffect(() => {
    if (follow && preRef.current) {
      preRef.current.scrollTop = preRef.current.scrollHeight;
    }
  }, [text, follow]);

  return (
    <section className="oxp-logs" aria-label="Task logs">
      <h3>Logs</h3>
      <div className="oxp-toolbar">
        <label>
          Task
          <select
            aria-label="Log of task"
            value={current ? `${current.role}-${current.task.taskIndex}` : ''}
            onChange={e => setWhich(e.target.value)}
          >
            {started.map(t => (
              <option key={`${t.role}-${t.task.taskIndex}`} value={`${t.role}-${t.task.taskIndex}`}>
                {t.role}-{t.task.taskIndex}
              </option>
            ))}
          </select>
        </label>
        <label>
          Stream
          <select
            aria-label="Log stream"
            value={stream}
            onChange={e => setStream(e.target.value as 'stdout' | 'stderr')}
          >
            <option value="stdout">stdout</option>
            <option value="stderr">stderr</option>
          </select>
        </label>
        <label>
          <input type="checkbox" aria-label="Follow the log" checked={follow} onChange={e => setFollow(e.target.checked)} />{' '}
          Follow
        </label>
      </div>
      <ErrorBox error={error} />
      <pre className="oxp-log" ref={preRef} tabIndex={0} aria-label={`${stream} log`}>
        {logPath ? text : 'The task has not started yet.'}
      </pre>
    </section>
  );
}
