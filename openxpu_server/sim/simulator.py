"""A discrete-event simulator in virtual time that drives any `Scheduler` with a job trace.

Events are arrivals (the trace, sorted) and completions (a heap). At each event time the simulator
applies every event of that time (arrivals join the queue, completions `release()` their gang),
then calls `schedule(queue)` once with all waiting gangs; placed gangs run for their `duration`.
Gangs named in `Decision.preempt` are stopped at once: they lose their progress, go back to the
queue as a new attempt (attempt + 1) and count a preemption; their cells are `release()`d and
`schedule` is called again at the same time (so the preemptor can start; at most
`MAX_ROUNDS` rounds per event time). A gang that `check()` rejects never enters the queue. The run
ends when every job has finished, at `time_limit`, or when nothing runs, nothing is left to arrive
and the queue still waits (those jobs can never start: "unfinished").

Cost: O(log n) per event plus one `schedule` call per event time (which sees the whole queue, as
the `Scheduler` interface requires); nothing scans all jobs per step.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..scheduler.base import GangRequest, Scheduler, SchedulerError, TaskRequest
from ..scheduler.layout_model import Layout
from .cluster import ClusterInfo, cluster_info
from .trace import TraceJob

MAX_ROUNDS = 8  # schedule calls per event time when decisions keep preempting
ROLE = "worker"


@dataclass
class JobResult:
    job: TraceJob
    state: str = "pending"  # pending | waiting | running | finished | rejected | unfinished
    queue_delay: float = 0.0  # seconds spent waiting in the queue, over all attempts
    start_time: float | None = None  # start of the last (the finishing) attempt
    first_start: float | None = None
    finish_time: float | None = None
    preemptions: int = 0
    lost_work: float = 0.0  # seconds of run time thrown away by preemptions
    reason: str = ""  # why it was rejected / last wait reason for unfinished jobs

    @property
    def jct(self) -> float | None:
        return None if self.finish_time is None else self.finish_time - self.job.submit_time


@dataclass
class Series:
    """Samples of the cluster state at fixed virtual-time steps (the value just before each step's events)."""

    t: list[float] = field(default_factory=list)
    utilization: list[float] = field(default_factory=list)  # used GPUs / total GPUs
    free_nodes: list[int] = field(default_factory=list)  # nodes with no leaf cell in use
    waiting: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)


@dataclass
class SimResult:
    scheduler: str
    jobs: list[JobResult]
    total_gpus: int
    total_leaves: int
    nodes: int
    makespan: float  # from time 0 to the last event
    gpu_seconds: float  # integral of used GPUs over time
    gpu_seconds_by_vc: dict[str, float]
    busy_window: tuple[float, float]  # first to last submit
    busy_gpu_seconds: float  # integral of used GPUs over the busy window
    free_nodes_seconds: float  # integral of fully free nodes
    free_cells_seconds: float  # integral of free leaf cells
    free_cells_on_free_nodes_seconds: float  # integral of free leaf cells on fully free nodes
    series: Series
    decisions: int  # schedule() calls
    schedule_wall_s: float  # wall time inside schedule()
    wall_s: float
    events: int


class Simulation:
    """One run of `jobs` through `scheduler` on `layout` (see the module docstring); the layout
    may be given as a `ClusterInfo` (a baseline's private cluster).

    `progress(dict)` is called about every `progress_every` wall seconds with `t`, `done`, `total`,
    `waiting`, `running`, `wall_s`.
    """

    def __init__(
        self,
        layout: Layout | ClusterInfo,
        scheduler: Scheduler,
        jobs: Sequence[TraceJob],
        *,
        name: str = "",
        time_limit: float | None = None,
        samples: int = 400,
        progress: Callable[[dict], None] | None = None,
        progress_every: float = 3.0,
    ):
        self.info = layout if isinstance(layout, ClusterInfo) else cluster_info(layout)
        self.scheduler = scheduler
        self.name = name or type(scheduler).__name__
        self.jobs = sorted(jobs, key=lambda j: j.submit_time)
        self.time_limit = time_limit
        self.samples = max(10, samples)
        self.progress = progress
        self.progress_every = progress_every
        self.leaf = self.info.main_leaf_type
        self.sku = self.info.sku.get(self.leaf)
        # One leaf type: jobs name it. Several: jobs name none (any chain), sized by the main type.
        self.sku_type = self.leaf if len(self.info.leaf_types) == 1 else None

    # -- requests ----------------------------------------------------------------------------
    def cells_per_task(self, job: TraceJob) -> int:
        g = self.sku.gpu if self.sku is not None else 1
        return max(1, math.ceil(job.gpus_per_task / g)) if g > 0 else 1

    def request(self, job: TraceJob, attempt: int = 0) -> GangRequest:
        cells = self.cells_per_task(job)
        cpu = cells * (self.sku.cpu if self.sku else 1)
        mem = cells * (self.sku.memory_mb if self.sku else 1024)
        return GangRequest(
            key=f"{job.user}~{job.job_id}",
            attempt=attempt,
            user=job.user,
            virtual_cluster=job.vc,
            priority=job.priority,
            submit_time=int(round(job.submit_time * 1000)),
            tasks=[TaskRequest(ROLE, i, cpu, mem, job.gpus_per_task) for i in range(job.task_count)],
            gang=True,
            hived={
                "jobPriorityClass": job.priority_class,
                "taskRoles": {ROLE: {"skuNum": cells, **({"skuType": self.sku_type} if self.sku_type else {})}},
            },
        )

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> SimResult:
        wall0 = time.perf_counter()
        sched = self.scheduler
        results = [JobResult(j) for j in self.jobs]
        n = len(results)
        by_key: dict[str, int] = {}
        requests: list[GangRequest] = []
        for i, j in enumerate(self.jobs):
            r = self.request(j)
            requests.append(r)
            by_key[r.key] = i
        if len(by_key) != n:
            raise ValueError("two trace jobs share a user and job_id")
        cells = [self.cells_per_task(j) for j in self.jobs]

        node_leaves = {nd.name: nd.leaves for nd in self.info.nodes}
        node_used = dict.fromkeys(node_leaves, 0)
        total_gpus = self.info.total_gpus
        total_leaves = self.info.total_leaves
        free_nodes = len(node_leaves)
        free_cells = total_leaves
        free_on_free = total_leaves  # free cells on fully free nodes
        used_gpus = 0
        running_placement: dict[int, list[tuple[str, int]]] = {}
        attempts = [0] * n
        enqueued_at = [0.0] * n
        started_at = [0.0] * n
        waiting: dict[str, GangRequest] = {}
        heap: list[tuple[float, int, int]] = []  # (finish time, job, attempt)
        gpu_by_vc: dict[str, float] = {}
        running_by_vc: dict[str, int] = {}

        first_submit = self.jobs[0].submit_time if self.jobs else 0.0
        last_submit = self.jobs[-1].submit_time if self.jobs else 0.0
        step = max(1.0, (last_submit - first_submit) / self.samples) if n else 1.0
        series = Series()
        next_sample = 0.0

        acc_gpu = acc_busy = acc_free_nodes = acc_free_cells = acc_free_on_free = 0.0
        last_t = 0.0
        arrival = 0
        done = 0
        decisions = 0
        sched_wall = 0.0
        events = 0
        steps = 0
        last_progress = wall0

        def occupy(i: int, placement, sign: int) -> None:
            nonlocal free_nodes, free_cells, free_on_free, used_gpus
            if sign > 0:
                picks = [(p.node, cells[i]) for p in placement.tasks.values()]
                running_placement[i] = picks
            else:
                picks = running_placement.pop(i)
            for node, c in picks:
                before = node_used.get(node)
                if before is None:  # a node the layout does not list (should not happen)
                    node_leaves[node] = c
                    node_used[node] = before = 0
                    free_nodes += 1
                    free_cells += c
                    free_on_free += c
                after = before + sign * c
                node_used[node] = after
                free_cells -= sign * c
                if before == 0 and after > 0:
                    free_nodes -= 1
                    free_on_free -= node_leaves[node]
                elif after == 0 and before > 0:
                    free_nodes += 1
                    free_on_free += node_leaves[node]
            g = self.jobs[i].gpus * sign
            used_gpus += g
            vc = self.jobs[i].vc
            running_by_vc[vc] = running_by_vc.get(vc, 0) + g

        def advance(t: float) -> None:
            nonlocal acc_gpu, acc_busy, acc_free_nodes, acc_free_cells, acc_free_on_free, last_t, next_sample, step
            dt = t - last_t
            if dt <= 0:
                return
            acc_gpu += used_gpus * dt
            lo, hi = max(last_t, first_submit), min(t, last_submit)
            if hi > lo:
                acc_busy += used_gpus * (hi - lo)
            acc_free_nodes += free_nodes * dt
            acc_free_cells += free_cells * dt
            acc_free_on_free += free_on_free * dt
            for vc, g in running_by_vc.items():
                if g:
                    gpu_by_vc[vc] = gpu_by_vc.get(vc, 0.0) + g * dt
            while next_sample < t:
                series.t.append(next_sample)
                series.utilization.append(used_gpus / total_gpus if total_gpus else 0.0)
                series.free_nodes.append(free_nodes)
                series.waiting.append(len(waiting))
                series.running.append(len(running_placement))
                next_sample += step
                if len(series.t) >= 2 * self.samples:  # keep every other sample, double the step
                    for name in ("t", "utilization", "free_nodes", "waiting", "running"):
                        setattr(series, name, getattr(series, name)[::2])
                    step *= 2
                    next_sample = series.t[-1] + step
            last_t = t

        def start(i: int, placement, t: float) -> None:
            res = results[i]
            res.state = "running"
            res.queue_delay += t - enqueued_at[i]
            res.start_time = t
            if res.first_start is None:
                res.first_start = t
            started_at[i] = t
            occupy(i, placement, +1)
            heapq.heappush(heap, (t + self.jobs[i].duration, i, attempts[i]))

        def stop(i: int, t: float) -> None:
            res = results[i]
            res.preemptions += 1
            res.lost_work += t - started_at[i]
            occupy(i, None, -1)
            sched.release(requests[i].key)
            attempts[i] += 1
            requests[i] = dataclasses.replace(requests[i], attempt=attempts[i])
            res.state = "waiting"
            enqueued_at[i] = t
            waiting[requests[i].key] = requests[i]

        while True:
            t_arr = self.jobs[arrival].submit_time if arrival < n else math.inf
            t_fin = heap[0][0] if heap else math.inf
            t = min(t_arr, t_fin)
            if t == math.inf:
                break
            if self.time_limit is not None and t > self.time_limit:
                advance(self.time_limit)
                break
            advance(t)
            while arrival < n and self.jobs[arrival].submit_time <= t:
                i = arrival
                arrival += 1
                events += 1
                req = requests[i]
                try:
                    sched.check(req)
                except SchedulerError as e:
                    results[i].state = "rejected"
                    results[i].reason = str(e)
                    done += 1
                    continue
                results[i].state = "waiting"
                enqueued_at[i] = t
                waiting[req.key] = req
            while heap and heap[0][0] <= t:
                _, i, att = heapq.heappop(heap)
                events += 1
                if att != attempts[i] or results[i].state != "running":
                    continue  # the attempt was preempted
                occupy(i, None, -1)
                sched.release(requests[i].key)
                results[i].state = "finished"
                results[i].finish_time = t
                done += 1
            for _ in range(MAX_ROUNDS):
                if not waiting:
                    break
                w0 = time.perf_counter()
                decision = sched.schedule(list(waiting.values()))
                sched_wall += time.perf_counter() - w0
                decisions += 1
                for placement in decision.placed:
                    i = by_key[placement.key]
                    if waiting.pop(placement.key, None) is None:
                        raise RuntimeError(f"{self.name} placed {placement.key}, which is not waiting")
                    start(i, placement, t)
                for key in decision.preempt:
                    i = by_key.get(key)
                    if i is not None and results[i].state == "running":
                        stop(i, t)
                if not decision.preempt:
                    break
            if not heap and arrival >= n:
                break  # nothing runs and nothing will arrive: the rest waits forever
            steps += 1
            if self.progress is not None and steps % 64 == 0:
                now = time.perf_counter()
                if now - last_progress >= self.progress_every:
                    last_progress = now
                    self.progress(
                        {
                            "scheduler": self.name,
                            "t": t,
                            "done": done,
                            "total": n,
                            "waiting": len(waiting),
                            "running": len(running_placement),
                            "wall_s": now - wall0,
                        }
                    )

        end = last_t
        for i, res in enumerate(results):
            if res.state in ("waiting", "running", "pending"):
                if res.state == "waiting":
                    res.queue_delay += end - enqueued_at[i]
                    info = sched.why_waiting(requests[i].key)
                    res.reason = info.reason if info else ""
                res.state = "unfinished"
        return SimResult(
            scheduler=self.name,
            jobs=results,
            total_gpus=total_gpus,
            total_leaves=total_leaves,
            nodes=len(self.info.nodes),
            makespan=end,
            gpu_seconds=acc_gpu,
            gpu_seconds_by_vc=gpu_by_vc,
            busy_window=(first_submit, last_submit),
            busy_gpu_seconds=acc_busy,
            free_nodes_seconds=acc_free_nodes,
            free_cells_seconds=acc_free_cells,
            free_cells_on_free_nodes_seconds=acc_free_on_free,
            series=series,
            decisions=decisions,
            schedule_wall_s=sched_wall,
            wall_s=time.perf_counter() - wall0,
            events=events,
        )
