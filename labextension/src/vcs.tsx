/** Virtual clusters: guaranteed, used, opportunistic and free GPUs per VC, my own usage, nodes for admins. */
import * as React from 'react';

import { ApiError, OpenXPUClient, Resources, VirtualCluster } from './api';
import { parseDoc } from './jobspec';
import { ErrorBox, IViewContext, NotAvailable, same, usePoll } from './util';

export interface IVcsProps extends IViewContext {
  client: OpenXPUClient;
  me: string;
}

export interface VcBars {
  total: number;
  guaranteed: number;
  used: number;
  /** GPUs used beyond the VC's guarantee (opportunistic or borrowed). */
  opportunistic: number;
  /** Guaranteed GPUs nobody uses. */
  free: number;
}

export type Unit = 'gpu' | 'cpu';

const amount = (r: Resources | undefined, unit: Unit): number =>
  Number(unit === 'gpu' ? (r?.gpu ?? r?.GPUs ?? 0) : (r?.cpu ?? r?.vCores ?? 0)) || 0;

/** GPUs when the cluster has any, else CPUs (a CPU-only box still has quotas to show). */
export function unitOf(vcs: Record<string, VirtualCluster>): Unit {
  return Object.values(vcs).some(vc => amount(vc.resourcesTotal, 'gpu') || amount(vc.resourcesGuaranteed, 'gpu'))
    ? 'gpu'
    : 'cpu';
}

/** The four figures of a VC's bar from OpenPAI's VC object. */
export function vcBars(vc: VirtualCluster, unit: Unit = 'gpu'): VcBars {
  const guaranteed = amount(vc.resourcesGuaranteed, unit);
  const used = amount(vc.resourcesUsed, unit);
  const total = Math.max(amount(vc.resourcesTotal, unit), guaranteed, used);
  const opportunistic = vc.resourcesOpportunistic
    ? amount(vc.resourcesOpportunistic, unit)
    : Math.max(0, used - guaranteed);
  return { total, guaranteed, used, opportunistic, free: Math.max(0, guaranteed - (used - opportunistic)) };
}

function Bar(props: { bars: VcBars; mine: number; name: string; unit: string }): JSX.Element {
  const { bars } = props;
  const scale = Math.max(bars.total, 1);
  const pct = (n: number) => `${(100 * n) / scale}%`;
  const inQuota = bars.used - bars.opportunistic;
  return (
    <div
      className="oxp-bar"
      role="img"
      aria-label={`${props.name}: ${bars.guaranteed} guaranteed, ${bars.used} used, ${bars.opportunistic} opportunistic, ${bars.free} free ${props.unit}; mine ${props.mine}`}
    >
      <div className="oxp-bar-guaranteed" style={{ width: pct(bars.guaranteed) }} />
      <div className="oxp-bar-used" style={{ width: pct(inQuota) }} />
      <div className="oxp-bar-oppo" style={{ left: pct(inQuota), width: pct(bars.opportunistic) }} />
      <div className="oxp-bar-mine" style={{ width: pct(Math.min(props.mine, bars.used)) }} />
    </div>
  );
}

type NodeInfo = { gpuUsed?: number; gpuAvailable?: number; gpuTotal?: number };

/** Per-node rows of `?nodes`: OpenXPU answers `nodeList` as node -> figures (OpenPAI: `nodes`). */
function nodeRows(vc: VirtualCluster): [string, NodeInfo][] {
  const src = (vc.nodeList && !Array.isArray(vc.nodeList) ? vc.nodeList : vc.nodes) ?? {};
  return Object.entries(src as Record<string, NodeInfo>);
}

const roleCpus = new Map<string, Record<string, number>>();

/** CPUs a running job holds (the job list carries GPUs only); a job's config never changes, so it is cached. */
async function cpusOf(client: OpenXPUClient, key: string): Promise<number> {
  let cpus = roleCpus.get(key);
  if (!cpus) {
    const doc = parseDoc(await client.getJobConfig(key));
    cpus = Object.fromEntries(
      Object.entries((doc.taskRoles ?? {}) as Record<string, any>).map(([role, r]) => [
        role,
        Number(r?.resourcePerInstance?.cpu ?? 0) || 0
      ])
    );
    roleCpus.set(key, cpus);
  }
  const detail = await client.getJob(key);
  return Object.entries(detail.taskRoles).reduce(
    (sum, [role, r]) => sum + (cpus![role] ?? 0) * r.taskStatuses.filter(t => t.taskState === 'RUNNING').length,
    0
  );
}

export function VcsView(props: IVcsProps): JSX.Element {
  const { client } = props;
  const [vcs, setVcs] = React.useState<Record<string, VirtualCluster> | null>(null);
  const [mine, setMine] = React.useState<Record<string, { gpu: number; cpu: number }>>({});
  const [error, setError] = React.useState<unknown>(null);
  const [showNodes, setShowNodes] = React.useState(false);
  const [missing, setMissing] = React.useState(false);
  const last = React.useRef<unknown>(null);

  usePoll(
    async () => {
      try {
        const [next, running] = await Promise.all([
          client.listVirtualClusters(showNodes),
          client.listJobs({ username: props.me, state: ['RUNNING', 'STOPPING'], limit: 1000 })
        ]);
        const used: Record<string, { gpu: number; cpu: number }> = {};
        await Promise.all(
          running.data.map(async j => {
            const u = (used[j.virtualCluster] ??= { gpu: 0, cpu: 0 });
            u.gpu += j.totalGpuNumber;
            if (unitOf(next) === 'cpu') {
              u.cpu += await cpusOf(client, `${j.username}~${j.name}`);
            }
          })
        );
        setError(null);
        setMissing(false);
        const changed = !same([next, used], last.current);
        last.current = [next, used];
        if (changed) {
          setVcs(next);
          setMine(used);
        }
        return changed;
      } catch (e) {
        if (e instanceof ApiError && e.notAvailable) {
          setMissing(true);
          return false;
        }
        setError(e);
        throw e;
      }
    },
    props,
    [showNodes],
    3000
  );

  const unit = unitOf(vcs ?? {});
  const unitName = unit === 'gpu' ? 'GPUs' : 'CPUs';
  const mineOf = (name: string) => mine[name]?.[unit] ?? 0;
  if (missing) {
    return (
      <div className="oxp-view oxp-vcs">
        <NotAvailable what="Virtual-cluster quota" route="GET openxpu/api/v2/virtual-clusters" />
      </div>
    );
  }
  return (
    <div className="oxp-view oxp-vcs">
      <div className="oxp-toolbar">
        <label>
          <input type="checkbox" checked={showNodes} onChange={e => setShowNodes(e.target.checked)} /> Per-node view (admins)
        </label>
      </div>
      <div className="oxp-legend" aria-hidden="true">
        <span className="oxp-key oxp-bar-guaranteed" /> guaranteed <span className="oxp-key oxp-bar-used" /> used{' '}
        <span className="oxp-key oxp-bar-oppo" /> opportunistic <span className="oxp-key oxp-bar-mine" /> mine
      </div>
      <ErrorBox error={error} />
      <div className="oxp-scroll">
      <table className="oxp-table" aria-label="Virtual clusters">
        <thead>
          <tr>
            <th scope="col">VC</th>
            <th scope="col">{unitName}</th>
            <th scope="col">Guar.</th>
            <th scope="col">Used</th>
            <th scope="col">Oppo.</th>
            <th scope="col">Free</th>
            <th scope="col">Mine</th>
          </tr>
        </thead>
        <tbody>
          {Object.entries(vcs ?? {}).map(([name, vc]) => {
            const b = vcBars(vc, unit);
            const nodes = nodeRows(vc);
            return (
              <React.Fragment key={name}>
                <tr data-vc={name}>
                  <th scope="row">{name}</th>
                  <td className="oxp-bar-cell">
                    <Bar bars={b} mine={mineOf(name)} name={name} unit={unitName} />
                  </td>
                  <td>{b.guaranteed}</td>
                  <td>{b.used}</td>
                  <td>{b.opportunistic}</td>
                  <td>{b.free}</td>
                  <td>{mineOf(name)}</td>
                </tr>
                {showNodes
                  ? nodes.map(([node, n]) => (
                      <tr key={`${name}/${node}`} className="oxp-node-row">
                        <td>↳ {node}</td>
                        <td colSpan={6}>
                          {n.gpuUsed ?? 0} used / {n.gpuAvailable ?? 0} available / {n.gpuTotal ?? 0} total GPUs
                        </td>
                      </tr>
                    ))
                  : null}
              </React.Fragment>
            );
          })}
        </tbody>
      </table>
      </div>
    </div>
  );
}
