"""Runs of the simulator turned into the report: per-VC and overall metrics, the sharing anomaly
(each VC against itself alone on a private cluster of its quota), and several schedulers side by
side. The metric definitions are in docs/simulator.md."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..scheduler.base import Scheduler
from ..scheduler.layout_model import Layout
from .baselines import FifoScheduler, QuotaScheduler
from .cluster import ClusterInfo, cluster_info, private_cluster, private_layout
from .simulator import SimResult, Simulation
from .trace import TraceJob

SCHEDULERS = ("hived", "quota", "fifo")
ANOMALY_TOLERANCE = 1.05  # "worse off than private": mean delay up by more than 5 % ...
WORSE_MIN_S = 60.0  # ... and by more than a minute


def make_scheduler(kind: str, layout: Layout | ClusterInfo, **options: Any) -> Scheduler:
    """`hived` (the HiveD cell scheduler), `quota` (capacity, `QuotaScheduler` options) or `fifo`.
    The baselines also take a `ClusterInfo`."""
    if kind == "quota":
        return QuotaScheduler(layout, **options)
    if kind == "fifo":
        return FifoScheduler(layout, **options)
    if kind == "hived":
        from ..scheduler.hived import HivedScheduler

        if not isinstance(layout, Layout):
            raise TypeError("the hived scheduler needs a Layout")
        return HivedScheduler(layout, **options)
    raise ValueError(f"unknown scheduler {kind!r} (known: {', '.join(SCHEDULERS)})")


def simulate(
    layout: Layout | ClusterInfo,
    jobs: Sequence[TraceJob],
    kind: str = "quota",
    *,
    options: dict | None = None,
    time_limit: float | None = None,
    progress: Callable[[dict], None] | None = None,
    name: str | None = None,
) -> SimResult:
    sched = make_scheduler(kind, layout, **(options or {}))
    return Simulation(layout, sched, jobs, name=name or kind, time_limit=time_limit, progress=progress).run()


# ------------------------------------------------------------------------------------------ metrics
def stats(values: Sequence[float]) -> dict[str, float | None]:
    """mean, p50, p95 (nearest rank) and max of `values`; None for each when empty."""
    if not values:
        return {"mean": None, "p50": None, "p95": None, "max": None}
    v = sorted(values)

    def rank(p: float) -> float:
        return v[max(0, math.ceil(p * len(v)) - 1)]

    return {"mean": sum(v) / len(v), "p50": rank(0.50), "p95": rank(0.95), "max": v[-1]}


def _rounded(x: Any, nd: int = 3) -> Any:
    if isinstance(x, float):
        return round(x, nd) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _rounded(v, nd) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v, nd) for v in x]
    return x


def _job_metrics(results) -> dict[str, Any]:
    finished = [r for r in results if r.state == "finished"]
    return {
        "jobs": len(results),
        "finished": len(finished),
        "rejected": sum(r.state == "rejected" for r in results),
        "unfinished": sum(r.state == "unfinished" for r in results),
        "queue_delay_s": stats([r.queue_delay for r in finished]),
        "guaranteed_queue_delay_s": stats([r.queue_delay for r in finished if r.job.priority >= 0]),
        "jct_s": stats([r.jct for r in finished]),
        "preemptions": sum(r.preemptions for r in results),
        "preempted_jobs": sum(r.preemptions > 0 for r in results),
        "lost_gpu_hours": sum(r.lost_work * r.job.gpus for r in results) / 3600,
    }


def summarize(res: SimResult, layout: Layout) -> dict[str, Any]:
    """The JSON-ready report of one run (without the sharing anomaly: see `sharing_anomaly`)."""
    info = cluster_info(layout)
    sku = info.sku.get(info.main_leaf_type)
    gpus_per_leaf = sku.gpu if sku is not None and sku.gpu > 0 else 1
    overall = _job_metrics(res.jobs)
    span = res.makespan
    lo, hi = res.busy_window
    overall.update(
        {
            "utilization": res.gpu_seconds / (res.total_gpus * span) if span > 0 and res.total_gpus else 0.0,
            "utilization_busy": (
                res.busy_gpu_seconds / (res.total_gpus * (hi - lo)) if hi > lo and res.total_gpus else None
            ),
            "free_nodes_mean": res.free_nodes_seconds / span if span > 0 else float(res.nodes),
            "free_nodes_fraction_mean": res.free_nodes_seconds / (span * res.nodes) if span > 0 and res.nodes else 1.0,
            "fragmentation": (
                1 - res.free_cells_on_free_nodes_seconds / res.free_cells_seconds if res.free_cells_seconds > 0 else 0.0
            ),
            "makespan_s": span,
            "gpu_hours": res.gpu_seconds / 3600,
            "decisions": res.decisions,
            "decision_ms_mean": 1000 * res.schedule_wall_s / res.decisions if res.decisions else 0.0,
            "schedule_wall_s": res.schedule_wall_s,
            "wall_s": res.wall_s,
            "events": res.events,
        }
    )
    by_vc: dict[str, list] = {}
    for r in res.jobs:
        by_vc.setdefault(r.job.vc, []).append(r)
    vcs = {}
    for vc in sorted(set(by_vc) | set(info.quota)):
        m = _job_metrics(by_vc.get(vc, []))
        m["quota_gpus"] = info.quota.get(vc, 0) * gpus_per_leaf if vc in info.quota else None
        m["gpu_hours"] = res.gpu_seconds_by_vc.get(vc, 0.0) / 3600
        vcs[vc] = m
    s = res.series
    return {
        "overall": overall,
        "vcs": vcs,
        "series": {
            "t_s": s.t,
            "utilization": s.utilization,
            "free_nodes": s.free_nodes,
            "waiting": s.waiting,
            "running": s.running,
        },
        "examples": {
            "rejected": [{"job": r.job.job_id, "reason": r.reason} for r in res.jobs if r.state == "rejected"][:5],
            "unfinished": [{"job": r.job.job_id, "reason": r.reason} for r in res.jobs if r.state == "unfinished"][:5],
        },
    }


def _ratio(shared: float | None, private: float | None) -> float | None:
    if shared is None or private is None:
        return None
    if private > 0:
        return shared / private
    return 1.0 if shared == 0 else None


def _worse(shared: float | None, private: float | None) -> bool:
    """Worse off than private: the mean delay grew by more than 60 s and more than 5 %."""
    if shared is None or private is None:
        return False
    return shared - private > max(WORSE_MIN_S, (ANOMALY_TOLERANCE - 1) * private)


def sharing_anomaly(
    layout: Layout,
    jobs: Sequence[TraceJob],
    kind: str,
    shared: dict[str, Any],
    *,
    options: dict | None = None,
    time_limit: float | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Adds the private run and the sharing anomaly to each VC of `shared` (a `summarize` result)
    by running each VC's jobs alone on a private cluster of its quota with the same scheduler kind:
    `private_layout` for HiveD, `private_cluster` (exactly the quota's leaf cells) for the baselines.

    `sharing_anomaly` = shared mean queuing delay / private mean queuing delay (1.0 when both are 0,
    None when only the private one is 0); `sharing_anomaly_delta_s` = shared - private;
    `sharing_anomaly_guaranteed` = the ratio over guaranteed jobs only (priority >= 0). Returns the
    overall summary: the worst ratios and the VCs worse off than private (`_worse`)."""
    by_vc: dict[str, list[TraceJob]] = {}
    for j in jobs:
        by_vc.setdefault(j.vc, []).append(j)
    ratios, guaranteed = {}, {}
    worse, worse_guaranteed = [], []
    for vc, m in shared["vcs"].items():
        m.update(
            {
                "private_queue_delay_s": None,
                "private_guaranteed_queue_delay_s": None,
                "private_jct_s": None,
                "sharing_anomaly": None,
                "sharing_anomaly_delta_s": None,
                "sharing_anomaly_guaranteed": None,
            }
        )
        if vc not in layout.virtual_clusters or not by_vc.get(vc) or not m.get("quota_gpus"):
            continue
        cluster = private_layout(layout, vc) if kind == "hived" else private_cluster(layout, vc)
        res = simulate(
            cluster, by_vc[vc], kind, options=options, time_limit=time_limit, progress=progress,
            name=f"{kind} private {vc}",
        )
        private = _job_metrics(res.jobs)
        m["private_queue_delay_s"] = private["queue_delay_s"]
        m["private_guaranteed_queue_delay_s"] = private["guaranteed_queue_delay_s"]
        m["private_jct_s"] = private["jct_s"]
        m["private_unfinished"] = private["unfinished"] + private["rejected"]
        s, p = m["queue_delay_s"]["mean"], private["queue_delay_s"]["mean"]
        gs, gp = m["guaranteed_queue_delay_s"]["mean"], private["guaranteed_queue_delay_s"]["mean"]
        m["sharing_anomaly"] = _ratio(s, p)
        m["sharing_anomaly_guaranteed"] = _ratio(gs, gp)
        m["sharing_anomaly_delta_s"] = None if s is None or p is None else s - p
        if m["sharing_anomaly"] is not None:
            ratios[vc] = m["sharing_anomaly"]
        if m["sharing_anomaly_guaranteed"] is not None:
            guaranteed[vc] = m["sharing_anomaly_guaranteed"]
        if _worse(s, p):
            worse.append(vc)
        if _worse(gs, gp):
            worse_guaranteed.append(vc)
    deltas = [m["sharing_anomaly_delta_s"] for m in shared["vcs"].values() if m.get("sharing_anomaly_delta_s") is not None]
    return {
        "max": max(ratios.values()) if ratios else None,
        "worst_vc": max(ratios, key=ratios.get) if ratios else None,
        "max_delta_s": max(deltas) if deltas else None,
        "vcs_worse_than_private": sorted(worse),
        "max_guaranteed": max(guaranteed.values()) if guaranteed else None,
        "vcs_worse_than_private_guaranteed": sorted(worse_guaranteed),
    }


def run_experiment(
    layout: Layout,
    jobs: Sequence[TraceJob],
    kinds: Sequence[str] = ("quota",),
    *,
    anomaly: bool = True,
    options: dict[str, dict] | None = None,
    time_limit: float | None = None,
    progress: Callable[[dict], None] | None = None,
    layout_name: str = "",
    trace_name: str = "",
) -> dict[str, Any]:
    """Each scheduler kind on the same trace (plus its private runs for the anomaly): the report."""
    t0 = time.perf_counter()
    info = cluster_info(layout)
    report: dict[str, Any] = {
        "layout": {
            "name": layout_name,
            "nodes": len(info.nodes),
            "leaf_cells": info.total_leaves,
            "gpus": info.total_gpus,
            "vc_quota_leaf_cells": dict(info.quota),
        },
        "trace": {
            "name": trace_name,
            "jobs": len(jobs),
            "span_s": (max(j.submit_time for j in jobs) - min(j.submit_time for j in jobs)) if jobs else 0.0,
            "gpu_hours_demanded": sum(j.gpus * j.duration for j in jobs) / 3600,
        },
        "schedulers": {},
    }
    for kind in kinds:
        opts = (options or {}).get(kind)
        res = simulate(layout, jobs, kind, options=opts, time_limit=time_limit, progress=progress)
        summary = summarize(res, layout)
        if anomaly:
            summary["overall"]["sharing_anomaly"] = sharing_anomaly(
                layout, jobs, kind, summary, options=opts, time_limit=time_limit, progress=progress
            )
        report["schedulers"][kind] = summary
    report["wall_s"] = time.perf_counter() - t0
    return _rounded(report)
