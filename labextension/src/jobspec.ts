/**
 * The submit form's model and its two-way mapping to an OpenPAI protocol v2 document.
 *
 * The YAML document is the truth: the form edits a few well-known fields of it, and anything the form
 * does not show (secrets, deployments, ports, extras...) survives a round trip untouched.
 */
import * as yaml from 'js-yaml';

export const PRIORITIES = ['', 'crit', 'prod', 'test', 'oppo'];

export interface RoleForm {
  name: string;
  instances: number;
  image: string;
  cpu: number;
  memoryMB: number;
  gpu: number;
  commands: string;
  taskRetryCount: number;
}

export interface ParamForm {
  key: string;
  value: string;
}

export interface JobForm {
  name: string;
  vc: string;
  priority: string;
  jobRetryCount: number;
  parameters: ParamForm[];
  roles: RoleForm[];
}

type Doc = Record<string, any>;

export function newRole(name = 'worker'): RoleForm {
  return {
    name,
    instances: 1,
    image: 'python:3.11-slim',
    cpu: 1,
    memoryMB: 1024,
    gpu: 0,
    commands: 'echo "hello from $PAI_CURRENT_TASK_ROLE_NAME-$PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX"',
    taskRetryCount: 0
  };
}

export function defaultForm(): JobForm {
  const stamp = new Date().toISOString().replace(/[-:T]/g, '').slice(2, 14);
  return { name: `job-${stamp}`, vc: 'default', priority: '', jobRetryCount: 0, parameters: [], roles: [newRole()] };
}

function num(v: unknown, fallback: number): number {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : fallback;
}

/** Parses YAML into a document; throws an Error naming the line when it is not a YAML mapping. */
export function parseDoc(text: string): Doc {
  const doc = yaml.load(text);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Error('the job must be a YAML mapping (protocolVersion, name, taskRoles, ...)');
  }
  return doc as Doc;
}

export function dumpDoc(doc: Doc): string {
  return yaml.dump(doc, { lineWidth: 120, noRefs: true });
}

/** The form's view of a document. */
export function formFromDoc(doc: Doc): JobForm {
  const images: Record<string, string> = {};
  for (const p of Array.isArray(doc.prerequisites) ? doc.prerequisites : []) {
    if (p && p.type === 'dockerimage' && p.name) {
      images[p.name] = String(p.uri ?? '');
    }
  }
  const roles: RoleForm[] = Object.entries((doc.taskRoles ?? {}) as Doc).map(([name, r]: [string, Doc]) => {
    const res = (r?.resourcePerInstance ?? {}) as Doc;
    const commands = Array.isArray(r?.commands) ? r.commands.map(String).join('\n') : '';
    return {
      name,
      instances: num(r?.instances, 1),
      image: images[r?.dockerImage] ?? String(r?.dockerImage ?? ''),
      cpu: num(res.cpu, 1),
      memoryMB: num(res.memoryMB, 1024),
      gpu: num(res.gpu, 0),
      commands,
      taskRetryCount: num(r?.taskRetryCount, 0)
    };
  });
  const params = (doc.parameters ?? {}) as Doc;
  return {
    name: String(doc.name ?? ''),
    vc: String(doc.defaults?.virtualCluster ?? 'default'),
    priority: String(doc.extras?.hivedScheduler?.jobPriorityClass ?? ''),
    jobRetryCount: num(doc.jobRetryCount, 0),
    parameters: Object.entries(params).map(([key, value]) => ({ key, value: String(value) })),
    roles
  };
}

/** The document with the form's fields written over `base` (fields the form does not own are kept). */
export function docFromForm(form: JobForm, base: Doc = {}): Doc {
  const doc: Doc = { protocolVersion: 2, name: form.name, type: 'job', ...base };
  doc.protocolVersion = base.protocolVersion ?? 2;
  doc.name = form.name;
  doc.type = base.type ?? 'job';
  if (form.jobRetryCount || 'jobRetryCount' in base) {
    doc.jobRetryCount = form.jobRetryCount;
  }

  // Docker images: reuse a prerequisite that already names the URI, else add one.
  const prereqs: Doc[] = (Array.isArray(base.prerequisites) ? base.prerequisites : []).filter(
    (p: Doc) => p?.type !== 'dockerimage'
  );
  const imageNames = new Map<string, string>();
  const oldImages = (Array.isArray(base.prerequisites) ? base.prerequisites : []).filter(
    (p: Doc) => p?.type === 'dockerimage'
  );
  for (const role of form.roles) {
    if (imageNames.has(role.image)) {
      continue;
    }
    const old = oldImages.find((p: Doc) => p.uri === role.image);
    const name = old?.name ?? (imageNames.size === 0 ? 'image' : `image-${imageNames.size}`);
    imageNames.set(role.image, name);
    prereqs.push(old ?? { type: 'dockerimage', name, uri: role.image });
  }
  doc.prerequisites = prereqs;

  if (form.parameters.length) {
    doc.parameters = Object.fromEntries(form.parameters.filter(p => p.key).map(p => [p.key, p.value]));
  } else {
    delete doc.parameters;
  }

  const oldRoles = (base.taskRoles ?? {}) as Doc;
  const taskRoles: Doc = {};
  for (const role of form.roles) {
    const old = (oldRoles[role.name] ?? {}) as Doc;
    const oldRes = (old.resourcePerInstance ?? {}) as Doc;
    const r: Doc = {
      ...old,
      instances: role.instances,
      dockerImage: imageNames.get(role.image),
      resourcePerInstance: { ...oldRes, cpu: role.cpu, memoryMB: role.memoryMB, gpu: role.gpu },
      commands: role.commands.split('\n').filter(line => line.trim() !== '')
    };
    if (role.taskRetryCount || 'taskRetryCount' in old) {
      r.taskRetryCount = role.taskRetryCount;
    }
    taskRoles[role.name] = r;
  }
  doc.taskRoles = taskRoles;

  doc.defaults = { ...(base.defaults ?? {}), virtualCluster: form.vc || 'default' };
  const extras: Doc = { ...(base.extras ?? {}) };
  const hived: Doc = { ...(extras.hivedScheduler ?? {}) };
  if (form.priority) {
    hived.jobPriorityClass = form.priority;
  } else {
    delete hived.jobPriorityClass;
  }
  if (Object.keys(hived).length) {
    extras.hivedScheduler = hived;
  } else {
    delete extras.hivedScheduler;
  }
  if (Object.keys(extras).length) {
    doc.extras = extras;
  } else {
    delete doc.extras;
  }
  return doc;
}

/**
 * The form control a server error path belongs to: `name`, `vc`, `priority`, `jobRetryCount`,
 * `parameters`, or `role:<index>:<field>` (`resources` for the resource vector as a whole); null when the
 * form has no such control.
 */
export function fieldForPath(path: string, form: JobForm): string | null {
  const parts = path.split('.');
  const head = parts[0];
  if (head === 'name' || head === 'jobRetryCount' || head === 'parameters') {
    return head;
  }
  if (head === 'defaults' && parts[1] === 'virtualCluster') {
    return 'vc';
  }
  if (head === 'extras' && parts[1] === 'hivedScheduler') {
    return 'priority';
  }
  if (head === 'prerequisites') {
    return form.roles.length ? 'role:0:image' : null;
  }
  if (head === 'taskRoles' && parts.length >= 2) {
    const index = form.roles.findIndex(r => r.name === parts[1]);
    if (index < 0) {
      return null;
    }
    if (parts[2] === 'resourcePerInstance' && parts.length === 3) {
      return `role:${index}:resources`; // a rule on the whole vector (e.g. fits on no node)
    }
    const field = parts[2] === 'resourcePerInstance' ? parts[3] : parts[2];
    const known: Record<string, string> = {
      instances: 'instances',
      dockerImage: 'image',
      cpu: 'cpu',
      memoryMB: 'memoryMB',
      gpu: 'gpu',
      commands: 'commands',
      taskRetryCount: 'taskRetryCount'
    };
    return `role:${index}:${known[field ?? ''] ?? 'name'}`;
  }
  return null;
}
