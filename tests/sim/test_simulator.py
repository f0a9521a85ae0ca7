"""The simulator's accounting on hand-made traces whose answers are known, preemption with a fake
scheduler, the sharing anomaly, and a scale smoke test."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from openxpu_server.scheduler.base import (
    Decision,
    GangPlacement,
    GangRequest,
    Scheduler,
    SchedulerError,
    TaskPlacement,
)
from openxpu_server.sim.baselines import FifoScheduler, QuotaScheduler
from openxpu_server.sim.cluster import uniform_layout
from openxpu_server.sim.experiment import run_experiment, simulate, stats, summarize
from openxpu_server.sim.simulator import Simulation
from openxpu_server.sim.trace import TraceJob, gen_trace


def job(i: int, t: float, duration: float, gpus: int = 8, tasks: int = 1, vc: str = "default", pc: str = "test") -> TraceJob:
    return TraceJob(f"j{i}", t, vc, "u", pc, tasks, gpus, duration)


def by_id(res):
    return {r.job.job_id: r for r in res.jobs}


def test_second_job_waits_exactly_the_first_ones_duration():
    layout = uniform_layout(1, 8)
    res = simulate(layout, [job(0, 0, 100), job(1, 0, 50)], "fifo")
    r = by_id(res)
    assert r["j0"].queue_delay == 0 and r["j0"].jct == 100
    assert r["j1"].queue_delay == 100 and r["j1"].start_time == 100 and r["j1"].jct == 150
    assert res.makespan == 150
    m = summarize(res, layout)["overall"]
    assert m["utilization"] == pytest.approx(1.0)
    assert m["queue_delay_s"] == {"mean": 50.0, "p50": 0.0, "p95": 100.0, "max": 100.0}
    assert m["free_nodes_mean"] == 0.0 and m["preemptions"] == 0


def test_utilization_free_nodes_and_fragmentation_are_exact():
    layout = uniform_layout(2, 8)
    # A: 2x8 GPUs for 100 s from t=0; B: 4 GPUs arriving at t=10 for 50 s -> waits 90 s.
    res = simulate(layout, [job(0, 0, 100, gpus=8, tasks=2), job(1, 10, 50, gpus=4)], "quota")
    r = by_id(res)
    assert r["j1"].queue_delay == 90 and r["j1"].jct == 140
    m = summarize(res, layout)["overall"]
    assert m["makespan_s"] == 150
    assert m["utilization"] == pytest.approx((16 * 100 + 4 * 50) / (16 * 150))
    assert m["utilization_busy"] == pytest.approx(1.0)  # [0, 10): all 16 GPUs in use
    assert m["free_nodes_mean"] == pytest.approx(50 / 150)  # one free node during [100, 150)
    assert m["free_nodes_fraction_mean"] == pytest.approx(50 / 150 / 2)
    assert m["fragmentation"] == pytest.approx(1 - (8 * 50) / (12 * 50))  # 4 of 12 free cells stranded
    assert m["gpu_hours"] == pytest.approx(1800 / 3600)
    assert res.series.t[0] == 0 and res.series.utilization[0] == 1.0
    vc = summarize(res, layout)["vcs"]["default"]
    assert vc["quota_gpus"] == 16 and vc["gpu_hours"] == pytest.approx(0.5)


def test_fifo_head_of_line_blocking_versus_quota_backfill():
    layout = uniform_layout(1, 8, {"default": 1})
    trace = [job(0, 0, 100, gpus=4), job(1, 1, 100, gpus=8), job(2, 2, 10, gpus=2), job(3, 3, 10, gpus=2)]
    fifo = by_id(simulate(layout, trace, "fifo"))
    quota = by_id(simulate(layout, trace, "quota"))
    # FIFO: the 8-GPU job waits for the first, and the small ones wait behind it.
    assert fifo["j1"].start_time == 100 and fifo["j2"].start_time == 200 and fifo["j3"].start_time == 200
    # Quota: the small ones start at once beside the first (backfill); the big one still waits.
    assert quota["j2"].start_time == 2 and quota["j3"].start_time == 3 and quota["j1"].start_time == 100


class PreemptingScheduler(Scheduler):
    """One node of 8 cells; a waiting gang preempts every running gang of lower priority."""

    def __init__(self):
        self.running: dict[str, tuple[int, int]] = {}  # key -> (priority, gpus)
        self.calls = 0

    def free(self) -> int:
        return 8 - sum(g for _, g in self.running.values())

    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        self.calls += 1
        d = Decision()
        for req in sorted(queue, key=lambda r: -r.priority):
            need = sum(t.gpu for t in req.tasks)
            if need <= self.free():
                self.running[req.key] = (req.priority, need)
                d.placed.append(GangPlacement(req.key, req.attempt, {("worker", 0): TaskPlacement("node0", "", list(range(need)))}))
            else:
                d.preempt += [k for k, (p, _) in self.running.items() if p < req.priority and k not in d.preempt]
        return d

    def release(self, key: str) -> None:
        self.running.pop(key, None)

    def restore(self, placement, request=None) -> None:
        raise NotImplementedError

    def why_waiting(self, key: str):
        return None


def test_preempted_jobs_lose_their_progress_and_are_counted():
    layout = uniform_layout(1, 8)
    trace = [job(0, 0, 100, pc="oppo"), job(1, 30, 10, pc="prod")]
    sched = PreemptingScheduler()
    res = Simulation(layout, sched, trace).run()
    r = by_id(res)
    low, high = r["j0"], r["j1"]
    assert high.start_time == 30 and high.queue_delay == 0 and high.jct == 10  # placed in the same instant
    assert low.preemptions == 1 and low.lost_work == 30
    assert low.first_start == 0 and low.start_time == 40 and low.finish_time == 140
    assert low.queue_delay == 10 and low.jct == 140
    m = summarize(res, layout)["overall"]
    assert m["preemptions"] == 1 and m["preempted_jobs"] == 1
    assert m["lost_gpu_hours"] == pytest.approx(8 * 30 / 3600)
    assert m["utilization"] == pytest.approx(1.0)
    assert summarize(res, layout)["vcs"]["default"]["preemptions"] == 1


def test_rejected_unfinished_and_time_limit():
    layout = uniform_layout(1, 8)
    res = simulate(layout, [job(0, 0, 100), job(1, 0, 10, gpus=16), job(2, 5, 100)], "quota", time_limit=150)
    r = by_id(res)
    assert r["j1"].state == "rejected" and "largest node has 8" in r["j1"].reason
    assert r["j0"].state == "finished" and r["j2"].state == "unfinished"
    assert res.makespan == 150
    m = summarize(res, layout)["overall"]
    assert (m["finished"], m["rejected"], m["unfinished"]) == (1, 1, 1)


def test_a_job_that_never_fits_does_not_hang_the_run():
    class Never(QuotaScheduler):
        def check(self, request):  # accepts everything, places nothing big
            pass

    layout = uniform_layout(1, 8)
    res = Simulation(layout, Never(layout), [job(0, 0, 10), job(1, 0, 10, gpus=4, tasks=3)]).run()
    r = by_id(res)
    assert r["j0"].state == "finished" and r["j1"].state == "unfinished"
    assert "waiting for resources" in r["j1"].reason


HAVE_HIVED = (Path(__file__).resolve().parents[2] / "openxpu_server" / "scheduler" / "hived" / "__init__.py").exists()
KINDS = ["quota", "fifo", *(["hived"] if HAVE_HIVED else [])]


def test_sharing_anomaly_is_one_on_a_single_vc_cluster():
    layout = uniform_layout(4, 8)
    jobs = gen_trace(jobs=300, seed=5, vcs=["default"], total_gpus=32, max_job_gpus={"default": 32}, load=1.2)
    report = run_experiment(layout, jobs, KINDS)
    for kind in KINDS:
        vc = report["schedulers"][kind]["vcs"]["default"]
        assert vc["queue_delay_s"]["mean"] > 0  # there was contention
        assert vc["sharing_anomaly"] == 1.0
        assert report["schedulers"][kind]["overall"]["sharing_anomaly"]["vcs_worse_than_private"] == []


def test_quota_lets_a_busy_vc_hurt_a_quiet_one_without_reclaim():
    layout = uniform_layout(2, 8, {"busy": 1, "quiet": 1})
    jobs = [job(i, i, 1000, vc="busy") for i in range(4)] + [job(10, 100, 10, vc="quiet")]
    report = run_experiment(layout, jobs, ["quota"])
    quiet = report["schedulers"]["quota"]["vcs"]["quiet"]
    # shared: the busy VC borrowed the quiet VC's node; private: the quiet VC's node was idle
    assert quiet["queue_delay_s"]["mean"] == 900  # until the first busy job ends at t=1000
    assert quiet["private_queue_delay_s"]["mean"] == 0 and quiet["sharing_anomaly"] is None
    assert quiet["sharing_anomaly_delta_s"] == 900 and quiet["sharing_anomaly_guaranteed"] is None
    overall = report["schedulers"]["quota"]["overall"]["sharing_anomaly"]
    assert overall["max_delta_s"] == 900 and overall["vcs_worse_than_private"] == ["quiet"]
    assert overall["vcs_worse_than_private_guaranteed"] == ["quiet"]
    # with reclaim the quiet VC takes its node back at once
    report = run_experiment(layout, jobs, ["quota"], options={"quota": {"reclaim": True}})
    quiet = report["schedulers"]["quota"]["vcs"]["quiet"]
    assert quiet["queue_delay_s"]["mean"] == 0 and quiet["sharing_anomaly"] == 1.0
    assert report["schedulers"]["quota"]["overall"]["preemptions"] == 1


@pytest.mark.skipif(not HAVE_HIVED, reason="the HiveD scheduler package is not there yet")
def test_hived_keeps_guaranteed_jobs_as_well_off_as_on_a_private_cluster():
    layout = uniform_layout(12, 8, {"a": 5, "b": 4, "c": 2})
    from openxpu_server.sim.trace import gen_trace_for_layout

    jobs = gen_trace_for_layout(None, layout, jobs=600, seed=1)
    report = run_experiment(layout, jobs, ["hived", "quota"])
    hived = report["schedulers"]["hived"]["overall"]["sharing_anomaly"]
    quota = report["schedulers"]["quota"]["overall"]["sharing_anomaly"]
    assert hived["max_guaranteed"] <= 1.05 and hived["vcs_worse_than_private_guaranteed"] == []
    assert quota["max_guaranteed"] > 2 and quota["vcs_worse_than_private_guaranteed"] == ["c"]


def test_stats_use_nearest_rank():
    assert stats([]) == {"mean": None, "p50": None, "p95": None, "max": None}
    assert stats([3, 1, 2, 4]) == {"mean": 2.5, "p50": 2, "p95": 4, "max": 4}


def test_unknown_scheduler_kind():
    with pytest.raises(ValueError, match="unknown scheduler 'lottery'"):
        simulate(uniform_layout(1, 8), [job(0, 0, 1)], "lottery")


def test_scale_200_nodes_5000_jobs_is_fast():
    layout = uniform_layout(200, 8, {"a": 80, "b": 60, "c": 40, "d": 20})
    quota = {"a": 640, "b": 480, "c": 320, "d": 160}
    jobs = gen_trace(jobs=5000, seed=1, vcs={k: float(v) for k, v in quota.items()}, total_gpus=1600, max_job_gpus=quota)
    t0 = time.perf_counter()
    res = simulate(layout, jobs, "quota")
    wall = time.perf_counter() - t0
    assert sum(r.state == "finished" for r in res.jobs) == 5000
    assert wall < 15, wall
    progress = []
    Simulation(layout, FifoScheduler(layout), jobs[:2000], progress=progress.append, progress_every=0.0).run()
    assert progress and {"t", "done", "total", "waiting", "running", "wall_s"} <= set(progress[-1])


def test_scheduler_errors_at_submit_are_rejections_not_crashes():
    class Picky(QuotaScheduler):
        def check(self, request):
            if request.virtual_cluster == "nope":
                raise SchedulerError("no such vc")

    layout = uniform_layout(1, 8)
    res = Simulation(layout, Picky(layout), [job(0, 0, 10, vc="nope"), job(1, 0, 10)]).run()
    assert [r.state for r in res.jobs] == ["rejected", "finished"]
