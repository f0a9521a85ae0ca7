/** Submit: a form kept in sync with the job's YAML; server validation errors shown at the field. */
import * as React from 'react';

import { ApiError, OpenXPUClient } from './api';
import {
  JobForm,
  PRIORITIES,
  RoleForm,
  defaultForm,
  docFromForm,
  dumpDoc,
  fieldForPath,
  formFromDoc,
  newRole,
  parseDoc
} from './jobspec';
import { ErrorBox } from './util';

export interface ISubmitProps {
  client: OpenXPUClient;
  /** A document to load (Clone, marketplace "Use", "Run as OpenXPU job"); `seq` changes on each load. */
  initial: { yaml: string; seq: number } | null;
  onSubmitted: (key: string) => void;
  /** The path of the notebook the user works in, if any. */
  activeNotebook: () => string | null;
}

type Errors = Record<string, string>;

function FieldError(props: { id: string; errors: Errors }): JSX.Element | null {
  const message = props.errors[props.id];
  return message ? (
    <div className="oxp-field-error" id={`oxp-err-${props.id.replace(/:/g, '-')}`} role="alert">
      {message}
    </div>
  ) : null;
}

function errProps(id: string, errors: Errors): Record<string, string | boolean> {
  return errors[id] ? { 'aria-invalid': true, 'aria-describedby': `oxp-err-${id.replace(/:/g, '-')}` } : {};
}

export function SubmitView(props: ISubmitProps): JSX.Element {
  const { client } = props;
  const [form, setForm] = React.useState<JobForm>(defaultForm);
  const docRef = React.useRef<Record<string, any>>(docFromForm(form));
  const [text, setText] = React.useState(() => dumpDoc(docRef.current));
  const [yamlError, setYamlError] = React.useState<string | null>(null);
  const [errors, setErrors] = React.useState<Errors>({});
  const [general, setGeneral] = React.useState<unknown>(null);
  const [busy, setBusy] = React.useState(false);
  const [notice, setNotice] = React.useState<string | null>(null);

  const loadYaml = (value: string) => {
    setText(value);
    try {
      const doc = parseDoc(value);
      docRef.current = doc;
      setForm(formFromDoc(doc));
      setYamlError(null);
    } catch (e) {
      setYamlError((e as Error).message);
    }
  };

  React.useEffect(() => {
    if (props.initial) {
      loadYaml(props.initial.yaml);
      setErrors({});
      setGeneral(null);
      setNotice(null);
    }
  }, [props.initial?.seq]);

  const update = (next: JobForm) => {
    setForm(next);
    const doc = docFromForm(next, docRef.current);
    docRef.current = doc;
    setText(dumpDoc(doc));
    setYamlError(null);
  };
  const set = <K extends keyof JobForm>(key: K, value: JobForm[K]) => update({ ...form, [key]: value });
  const setRole = (i: number, patch: Partial<RoleForm>) =>
    update({ ...form, roles: form.roles.map((r, j) => (j === i ? { ...r, ...patch } : r)) });

  const submit = async (e?: React.FormEvent) => {
    e?.preventDefault();
    if (yamlError) {
      setGeneral(new Error(`YAML: ${yamlError}`));
      return;
    }
    setBusy(true);
    setErrors({});
    setGeneral(null);
    setNotice(null);
    try {
      const key = await client.submitJob(text);
      setNotice(`Submitted ${key}`);
      props.onSubmitted(key);
    } catch (err) {
      const field = err instanceof ApiError && err.field ? fieldForPath(err.field, form) : null;
      if (field) {
        setErrors({ [field]: (err as ApiError).message });
        // bring the field into view and focus, so the user (and a screen reader) lands on it
        requestAnimationFrame(() => {
          const el = document.querySelector(`[data-field="${field}"]`) as HTMLElement | null;
          el?.focus();
        });
      } else {
        setGeneral(err);
      }
    } finally {
      setBusy(false);
    }
  };

  const fromNotebook = async () => {
    const path = props.activeNotebook();
    if (!path) {
      setGeneral(new Error('Open a notebook first: "Submit this notebook" converts the active notebook.'));
      return;
    }
    try {
      loadYaml(await client.convertNotebook(path));
      setGeneral(null);
      setNotice(`Loaded ${path} as a job; review it and submit.`);
    } catch (err) {
      setGeneral(
        err instanceof ApiError && err.notAvailable
          ? new Error('Notebook-to-job conversion is not available on this server.')
          : err
      );
    }
  };

  const input = (id: string, label: string, value: string | number, onChange: (v: string) => void, type = 'text') => (
    <div className="oxp-field">
      <label htmlFor={`oxp-f-${id.replace(/:/g, '-')}`}>{label}</label>
      <input
        id={`oxp-f-${id.replace(/:/g, '-')}`}
        data-field={id}
        type={type}
        min={type === 'number' ? 0 : undefined}
        value={value}
        onChange={e => onChange(e.target.value)}
        {...errProps(id, errors)}
      />
      <FieldError id={id} errors={errors} />
    </div>
  );
  const int = (v: string) => (v === '' ? 0 : Math.max(0, Math.floor(Number(v)) || 0));

  return (
    <div className="oxp-view oxp-submit">
      <form onSubmit={submit} aria-label="Submit a job">
        <div className="oxp-toolbar">
          <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={busy}>
            {busy ? 'Submitting…' : 'Submit'}
          </button>
          <button type="button" className="jp-mod-styled" onClick={fromNotebook}>
            Submit this notebook
          </button>
          <button
            type="button"
            className="jp-mod-styled"
            onClick={() => {
              update(defaultForm());
              docRef.current = docFromForm(defaultForm());
              setText(dumpDoc(docRef.current));
              setErrors({});
            }}
          >
            New
          </button>
        </div>
        {notice ? (
          <div className="oxp-notice" role="status">
            {notice}
          </div>
        ) : null}
        <ErrorBox error={general} />
        {input('name', 'Job name', form.name, v => set('name', v))}
        {input('vc', 'Virtual cluster', form.vc, v => set('vc', v))}
        <div className="oxp-field">
          <label htmlFor="oxp-f-priority">Priority</label>
          <select
            id="oxp-f-priority"
            data-field="priority"
            value={form.priority}
            onChange={e => set('priority', e.target.value)}
            {...errProps('priority', errors)}
          >
            {PRIORITIES.map(p => (
              <option key={p} value={p}>
                {p || '(default: test)'}
              </option>
            ))}
          </select>
          <FieldError id="priority" errors={errors} />
        </div>
        {input('jobRetryCount', 'Job retries', form.jobRetryCount, v => set('jobRetryCount', int(v)), 'number')}

        {form.roles.map((role, i) => (
          <fieldset key={i} className="oxp-role">
            <legend>Task role {role.name}</legend>
            {input(`role:${i}:name`, 'Role name', role.name, v => setRole(i, { name: v }))}
            {input(`role:${i}:instances`, 'Instances', role.instances, v => setRole(i, { instances: int(v) }), 'number')}
            {input(`role:${i}:image`, 'Docker image', role.image, v => setRole(i, { image: v }))}
            <div
              className="oxp-row"
              role="group"
              aria-label={`Resources per instance of ${role.name}`}
              data-field={`role:${i}:resources`}
              tabIndex={-1}
              {...errProps(`role:${i}:resources`, errors)}
            >
              {input(`role:${i}:cpu`, 'CPUs', role.cpu, v => setRole(i, { cpu: int(v) }), 'number')}
              {input(`role:${i}:memoryMB`, 'Memory (MB)', role.memoryMB, v => setRole(i, { memoryMB: int(v) }), 'number')}
              {input(`role:${i}:gpu`, 'GPUs', role.gpu, v => setRole(i, { gpu: int(v) }), 'number')}
            </div>
            <FieldError id={`role:${i}:resources`} errors={errors} />
            {input(
              `role:${i}:taskRetryCount`,
              'Task retries',
              role.taskRetryCount,
              v => setRole(i, { taskRetryCount: int(v) }),
              'number'
            )}
            <div className="oxp-field">
              <label htmlFor={`oxp-f-role-${i}-commands`}>Commands (one per line)</label>
              <textarea
                id={`oxp-f-role-${i}-commands`}
                data-field={`role:${i}:commands`}
                rows={3}
                value={role.commands}
                onChange={e => setRole(i, { commands: e.target.value })}
                {...errProps(`role:${i}:commands`, errors)}
              />
              <FieldError id={`role:${i}:commands`} errors={errors} />
            </div>
            {form.roles.length > 1 ? (
              <button
                type="button"
                className="jp-mod-styled"
                onClick={() => update({ ...form, roles: form.roles.filter((_, j) => j !== i) })}
              >
                Remove role {role.name}
              </button>
            ) : null}
          </fieldset>
        ))}
        <button
          type="button"
          className="jp-mod-styled"
          onClick={() => update({ ...form, roles: [...form.roles, newRole(`role${form.roles.length + 1}`)] })}
        >
          Add task role
        </button>

        <fieldset className="oxp-params">
          <legend>Parameters</legend>
          {form.parameters.map((p, i) => (
            <div className="oxp-row" key={i}>
              <input
                aria-label={`Parameter ${i + 1} name`}
                value={p.key}
                onChange={e =>
                  set('parameters', form.parameters.map((q, j) => (j === i ? { ...q, key: e.target.value } : q)))
                }
              />
              <input
                aria-label={`Parameter ${i + 1} value`}
                value={p.value}
                onChange={e =>
                  set('parameters', form.parameters.map((q, j) => (j === i ? { ...q, value: e.target.value } : q)))
                }
              />
              <button
                type="button"
                className="jp-mod-styled"
                aria-label={`Remove parameter ${i + 1}`}
                onClick={() => set('parameters', form.parameters.filter((_, j) => j !== i))}
              >
                ×
              </button>
            </div>
          ))}
          <button
            type="button"
            className="jp-mod-styled"
            data-field="parameters"
            onClick={() => set('parameters', [...form.parameters, { key: `p${form.parameters.length + 1}`, value: '' }])}
          >
            Add parameter
          </button>
          <FieldError id="parameters" errors={errors} />
        </fieldset>

        <div className="oxp-field">
          <label htmlFor="oxp-f-yaml">Job YAML (protocol v2)</label>
          <textarea
            id="oxp-f-yaml"
            className="oxp-yaml"
            spellCheck={false}
            rows={16}
            value={text}
            onChange={e => loadYaml(e.target.value)}
            aria-invalid={yamlError ? true : undefined}
            aria-describedby={yamlError ? 'oxp-err-yaml' : undefined}
          />
          {yamlError ? (
            <div className="oxp-field-error" id="oxp-err-yaml" role="alert">
              YAML: {yamlError}
            </div>
          ) : null}
        </div>
      </form>
    </div>
  );
}
