/**
 * The typed REST client of the OpenXPU API (`{base_url}openxpu/api/v2/`), shared by every view.
 *
 * Every call goes through `ServerConnection.makeRequest`, so the lab's token/XSRF handling applies.
 * Errors are thrown as `ApiError` carrying the server's `{code, message}`; `field` is the dotted path the
 * server names at the start of `message` (e.g. `taskRoles.worker.resourcePerInstance.gpu`), so forms can
 * show the error at the field.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const API_PATH = 'openxpu/api/v2';

export type JobState = 'WAITING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'SUCCEEDED' | 'FAILED' | 'UNKNOWN';
export const JOB_STATES: JobState[] = ['WAITING', 'RUNNING', 'STOPPING', 'STOPPED', 'SUCCEEDED', 'FAILED', 'UNKNOWN'];
export const FINAL_STATES: JobState[] = ['STOPPED', 'SUCCEEDED', 'FAILED'];

export interface ServerInfo {
  name: string;
  version: string;
  server: string;
  user: string;
}

export interface JobSummary {
  debugId: string;
  name: string;
  username: string;
  state: JobState;
  subState: string;
  executionType: 'START' | 'STOP';
  tags: string[];
  retries: number;
  submissionTime: number;
  createdTime: number;
  launchedTime: number | null;
  completedTime: number | null;
  appExitCode: number | null;
  virtualCluster: string;
  totalGpuNumber: number;
  totalTaskNumber: number;
  totalTaskRoleNumber: number;
  jobPriority: string | null;
}

export interface JobPage {
  totalCount: number;
  data: JobSummary[];
}

export interface ExitSpec {
  code: number;
  phrase: string;
  type: string;
  reason: string;
  solution: string[];
  repro: string[];
}

export interface TaskStatus {
  taskIndex: number;
  taskState: JobState;
  retries: number;
  containerIp: string | null;
  containerNodeName: string | null;
  containerPorts: Record<string, string>;
  containerGpus: string | null;
  containerLog: string;
  containerExitCode: number | null;
  containerExitSpec: ExitSpec | null;
  containerExitDiagnostics: string | null;
  launchedTime: number | null;
  completedTime: number | null;
  attemptId: number;
}

export interface JobStatus {
  username: string;
  state: JobState;
  subState: string;
  executionType: 'START' | 'STOP';
  retries: number;
  retryDetails: { user: number; platform: number; resource: number };
  submissionTime: number;
  launchedTime: number | null;
  completedTime: number | null;
  attemptId: number;
  appExitCode: number | null;
  appExitSpec: ExitSpec | null;
  appExitDiagnostics: string | null;
  appExitMessages: { container: string | null; runtime: Record<string, unknown> | null; launcher: string | null };
  appExitTriggerTaskRoleName: string | null;
  appExitTriggerTaskIndex: number | null;
  appExitType: string | null;
  virtualCluster: string;
  waitReason: string | null;
  dockerImages: Record<string, string>;
}

export interface JobDetail {
  debugId: string;
  name: string;
  tags: string[];
  jobPriority: string | null;
  jobStatus: JobStatus;
  taskRoles: Record<string, { taskRoleStatus: { name: string }; taskStatuses: TaskStatus[] }>;
}

/** A resource vector as OpenPAI reports it (`vCores`/`GPUs` are aliases of `cpu`/`gpu`). */
export interface Resources {
  cpu?: number;
  memory?: number;
  gpu?: number;
  vCores?: number;
  GPUs?: number;
}

/** OpenPAI's VC object; capacities are % of the cluster's GPUs. */
export interface VirtualCluster {
  capacity?: number;
  usedCapacity?: number;
  maxCapacity?: number;
  dedicated?: boolean;
  resourcesUsed?: Resources;
  resourcesGuaranteed?: Resources;
  resourcesTotal?: Resources;
  resourcesOpportunistic?: Resources;
  /** With `?nodes`: node -> GPU figures (OpenXPU); a plain node list elsewhere. */
  nodeList?: string[] | Record<string, { gpuUsed?: number; gpuAvailable?: number; gpuTotal?: number }>;
  nodes?: Record<string, { gpuUsed?: number; gpuAvailable?: number; gpuTotal?: number }>;
  [key: string]: unknown;
}

export interface MarketplaceItem {
  id: string;
  name: string;
  author?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  categories?: string[];
  protocol?: string;
  notebook?: unknown;
  useNumber?: number;
  starNumber?: number;
  [key: string]: unknown;
}

export interface LogChunk {
  text: string;
  offset: number;
}

export interface ListQuery {
  offset?: number;
  limit?: number;
  state?: string[];
  vc?: string;
  username?: string;
  keyword?: string;
  order?: string;
}

/** An error answer of the API (`{code, message}`), or a network failure (`status` 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The dotted field path the server put before the first `: ` of its message, if any. */
  get field(): string | null {
    const m = /^([A-Za-z0-9_.$\-[\]]+):\s/.exec(this.message);
    return m ? m[1] : null;
  }

  /** True when the route does not exist on this server (an older server, or a feature not installed). */
  get notAvailable(): boolean {
    return this.status === 404 && this.code === 'NoApiError';
  }
}

function pathOf(...parts: string[]): string {
  return parts.map(p => encodeURIComponent(p)).join('/');
}

/** A job id `<user>~<name>` as one path segment (the `~` is kept, as the server's routes expect it). */
export function jobPath(key: string): string {
  return 'jobs/' + encodeURIComponent(key).replace(/%7E/gi, '~');
}

export class OpenXPUClient {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  url(endpoint: string, query?: Record<string, string | number | undefined>): string {
    let url = URLExt.join(this.settings.baseUrl, API_PATH, endpoint);
    if (query) {
      const q = Object.entries(query)
        .filter(([, v]) => v !== undefined && v !== '')
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
        .join('&');
      if (q) {
        url += '?' + q;
      }
    }
    return url;
  }

  /** One request; answers the raw Response after turning error statuses into ApiError. */
  async raw(url: string, init: RequestInit = {}): Promise<Response> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (e) {
      throw new ApiError(0, 'NetworkError', `The server cannot be reached (${(e as Error).message}).`);
    }
    if (!response.ok) {
      let code = 'UnknownError';
      let message = response.statusText || `HTTP ${response.status}`;
      try {
        const body = await response.json();
        code = body.code ?? code;
        message = body.message ?? message;
      } catch {
        // not JSON: keep the status text
      }
      throw new ApiError(response.status, code, message);
    }
    return response;
  }

  async json<T>(endpoint: string, init: RequestInit = {}, query?: Record<string, string | number | undefined>): Promise<T> {
    const response = await this.raw(this.url(endpoint, query), init);
    return (await response.json()) as T;
  }

  // -- info ----------------------------------------------------------------------------------
  info(): Promise<ServerInfo> {
    return this.json<ServerInfo>('info');
  }

  // -- jobs ----------------------------------------------------------------------------------
  listJobs(q: ListQuery = {}): Promise<JobPage> {
    return this.json<JobPage>('jobs', {}, {
      withTotalCount: 'true',
      offset: q.offset,
      limit: q.limit,
      state: q.state?.join(','),
      vc: q.vc,
      username: q.username,
      keyword: q.keyword,
      order: q.order
    });
  }

  getJob(key: string): Promise<JobDetail> {
    return this.json<JobDetail>(jobPath(key));
  }

  async getJobConfig(key: string): Promise<string> {
    const response = await this.raw(this.url(jobPath(key) + '/config'));
    return response.text();
  }

  /** Submits a protocol v2 document (YAML text); answers the job id `<user>~<name>`. */
  async submitJob(yamlText: string): Promise<string> {
    const body = await this.json<{ job: string }>('jobs', {
      method: 'POST',
      body: yamlText,
      headers: { 'Content-Type': 'text/yaml' }
    });
    return body.job;
  }

  async stopJob(key: string): Promise<void> {
    await this.json(jobPath(key) + '/executionType', { method: 'PUT', body: JSON.stringify({ value: 'STOP' }) });
  }

  /**
   * A task log from byte `offset` (or its last 16 KB when offset is null). `containerLog` is the task
   * status's log-locations path; the answer's `offset` is where the next read resumes.
   */
  async readLog(containerLog: string, name: 'stdout' | 'stderr' | 'all', offset: number | null): Promise<LogChunk> {
    const base = URLExt.join(this.settings.baseUrl, containerLog.replace(/^\//, ''), name);
    const url = offset === null ? `${base}?tail-mode=true` : `${base}?offset=${offset}`;
    const response = await this.raw(url);
    const text = await response.text();
    const next = Number(response.headers.get('X-OpenXPU-Log-Offset'));
    return { text, offset: Number.isFinite(next) && next > 0 ? next : (offset ?? 0) + text.length };
  }

  // -- virtual clusters (accounts API) --------------------------------------------------------
  listVirtualClusters(nodes = false): Promise<Record<string, VirtualCluster>> {
    return this.json<Record<string, VirtualCluster>>('virtual-clusters', {}, nodes ? { nodes: 'true' } : undefined);
  }

  // -- marketplace -----------------------------------------------------------------------------
  async listTemplates(query: { keyword?: string; tag?: string; category?: string } = {}): Promise<MarketplaceItem[]> {
    const body = await this.json<MarketplaceItem[] | { data?: MarketplaceItem[]; items?: MarketplaceItem[] }>(
      'marketplace/items',
      {},
      query
    );
    return Array.isArray(body) ? body : (body.data ?? body.items ?? []);
  }

  getTemplate(id: string): Promise<MarketplaceItem> {
    return this.json<MarketplaceItem>(pathOf('marketplace', 'items', id));
  }

  // -- notebook -> job ---------------------------------------------------------------------------
  /** Converts a notebook (a path on the Jupyter server) into a protocol v2 YAML, server side. */
  async convertNotebook(path: string, parameters: Record<string, string> = {}): Promise<string> {
    const response = await this.raw(this.url('convert/notebook'), {
      method: 'POST',
      body: JSON.stringify({ path, parameters })
    });
    const type = response.headers.get('Content-Type') ?? '';
    if (type.includes('json')) {
      const body = await response.json();
      return body.protocol ?? body.yaml ?? '';
    }
    return response.text();
  }
}
