"""Scheduler throughput: HiveD cell scheduler vs a FIFO first-fit baseline on a simulated cluster.

The cluster (built in code): racks of 10 nodes x 8 GPUs (GPU -> NVLink pair -> CPU socket -> node
-> rack), 5,000 nodes by default, split among four VCs at different cell levels (racks, nodes,
sockets, pairs). The workload: 10,000 queued jobs of mixed gang shapes (1x1, 1x2, 1x4, 1x8, 2x8,
4x8 GPUs), spread over the VCs by quota, 10 % opportunistic, guaranteed priorities test/prod/crit.

Phases, each scheduler on the same job list in the same run:
  1. fill   - everything queued at once; `schedule()` is called until it places nothing more.
  2. steady - simulated time: the earliest-finishing jobs complete (`release()`), as many new jobs
              arrive, and `schedule()` runs once per event time (plus once more after preemptions,
              whose victims are released and re-queued at once, as the controller/simulator do).

Reported per scheduler and phase:
  - placements/s: tasks (pods) placed / wall time spent inside schedule() + release();
  - decision latency p50 / p99 per placed gang: the time the scheduler spent deciding that gang
    (from starting to consider it to its placement being committed; queue bookkeeping and the
    failed attempts of other gangs are excluded but are part of placements/s);
  - schedule() call latency p50 / p99 (whole calls, whatever they placed);
  - GPU utilization at the end of the fill phase, preemptions.

The baseline `fifo`: one global queue by submit time (no VCs, no priorities), first-fit over the
nodes in order, whole gang or nothing, and the head of the queue blocks everything behind it.

    python benchmarks/scheduler_throughput.py            # 5,000 nodes, 10,000 jobs
    python benchmarks/scheduler_throughput.py --quick    # 500 nodes, 1,000 jobs (seconds)
    python benchmarks/scheduler_throughput.py --profile  # also cProfile the HiveD run
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import io
import pstats
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openxpu_server.scheduler.base import (  # noqa: E402
    Decision,
    GangPlacement,
    GangRequest,
    Scheduler,
    TaskPlacement,
    TaskRequest,
    WaitInfo,
)
from openxpu_server.scheduler.hived import HivedScheduler  # noqa: E402
from openxpu_server.scheduler.layout import load_layout  # noqa: E402
from openxpu_server.scheduler.layout_model import Layout  # noqa: E402

NODES_PER_RACK = 10
GPUS_PER_NODE = 8
SHAPES = [
    ((1, 1), 30),
    ((1, 2), 20),
    ((1, 4), 20),
    ((1, 8), 15),
    ((2, 8), 10),
    ((4, 8), 5),
]  # (tasks, gpus), %
VC_SHARES = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
PRIORITIES = [(10, 70), (100, 25), (120, 5)]
OPPORTUNISTIC = 0.10


# ------------------------------------------------------------------------------------------ cluster
def build_layout(nodes: int) -> Layout:
    """Racks of 10 x 8-GPU nodes; VC a holds whole racks, b nodes, c nodes + sockets, d nodes + pairs."""
    racks = max(nodes // NODES_PER_RACK, 4)
    nodes = racks * NODES_PER_RACK
    a_racks = int(racks * VC_SHARES["a"])
    rest = nodes - a_racks * NODES_PER_RACK
    b_nodes = int(nodes * VC_SHARES["b"])
    c_total = int(nodes * VC_SHARES["c"])
    d_total = rest - b_nodes - c_total
    c_nodes, c_sockets = c_total * 4 // 5, (c_total - c_total * 4 // 5) * 2
    d_nodes, d_pairs = d_total // 2, (d_total - d_total // 2) * 4
    return load_layout(
        {
            "physicalCluster": {
                "skuTypes": {"A100": {"gpu": 1, "cpu": 12, "memory": 117760}},
                "cellTypes": {
                    "A100-PAIR": {"childCellType": "A100", "childCellNumber": 2},
                    "A100-SOCKET": {"childCellType": "A100-PAIR", "childCellNumber": 2},
                    "A100-NODE": {"childCellType": "A100-SOCKET", "childCellNumber": 2, "isNodeLevel": True},
                    "A100-RACK": {"childCellType": "A100-NODE", "childCellNumber": NODES_PER_RACK},
                },
                "physicalCells": [
                    {
                        "cellType": "A100-RACK",
                        "cellAddress": f"rack{r}",
                        "cellChildren": [{"cellAddress": f"r{r}-n{i}"} for i in range(NODES_PER_RACK)],
                    }
                    for r in range(racks)
                ],
            },
            "virtualClusters": {
                "a": {"virtualCells": [{"cellType": "A100-RACK", "cellNumber": a_racks}]},
                "b": {"virtualCells": [{"cellType": "A100-RACK.A100-NODE", "cellNumber": b_nodes}]},
                "c": {
                    "virtualCells": [
                        {"cellType": "A100-RACK.A100-NODE", "cellNumber": c_nodes},
                        {"cellType": "A100-RACK.A100-NODE.A100-SOCKET", "cellNumber": c_sockets},
                    ]
                },
                "d": {
                    "virtualCells": [
                        {"cellType": "A100-RACK.A100-NODE", "cellNumber": d_nodes},
                        {"cellType": "A100-RACK.A100-NODE.A100-SOCKET.A100-PAIR", "cellNumber": d_pairs},
                    ]
                },
            },
        }
    )


# ------------------------------------------------------------------------------------------ workload
@dataclass
class Job:
    key: str
    vc: str
    priority: int
    tasks: int
    gpus: int
    duration: int
    submit: int

    def request(self, attempt: int = 0) -> GangRequest:
        # d's pairs and c's sockets cannot hold 8-GPU tasks; the VC choice below respects that via check().
        return GangRequest(
            key=self.key,
            attempt=attempt,
            user="bench",
            virtual_cluster=self.vc,
            priority=self.priority,
            submit_time=self.submit,
            tasks=[TaskRequest("worker", i, 4, 8192, self.gpus) for i in range(self.tasks)],
        )


def make_jobs(n: int, seed: int, start: int = 0) -> list[Job]:
    rnd = random.Random(seed)
    shapes = [s for s, w in SHAPES for _ in range(w)]
    prios = [p for p, w in PRIORITIES for _ in range(w)]
    vcs = [v for v, share in VC_SHARES.items() for _ in range(int(share * 100))]
    jobs = []
    for i in range(n):
        tasks, gpus = rnd.choice(shapes)
        prio = -1 if rnd.random() < OPPORTUNISTIC else rnd.choice(prios)
        jobs.append(
            Job(f"bench~j{start + i}", rnd.choice(vcs), prio, tasks, gpus, rnd.randint(10, 1000), start + i)
        )
    return jobs


# ------------------------------------------------------------------------------------------ baseline
class FifoFirstFit(Scheduler):
    """One global FIFO queue (submit time), first-fit over nodes, whole gangs, head-of-line blocking."""

    def __init__(self, layout: Layout):
        self.names: list[str] = []
        for rack in layout.physical_cells:
            self.names.extend(str(c.address) for c in rack.children)
        self.free = [GPUS_PER_NODE] * len(self.names)
        self.total_free = len(self.names) * GPUS_PER_NODE
        self.held: dict[str, list[tuple[int, list[int]]]] = {}
        self.used_devices: list[set[int]] = [set() for _ in self.names]
        self.decision_times: list[float] | None = None
        self._head: str | None = None

    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        decision = Decision()
        self._head = None
        for req in sorted(queue, key=lambda r: (r.submit_time, r.key)):
            if req.key in self.held:
                continue
            t0 = time.perf_counter()
            need = sum(t.gpu for t in req.tasks)
            if need > self.total_free:
                self._head = req.key
                break
            picks: list[tuple[int, list[int]]] = []
            for t in sorted(req.tasks, key=lambda t: -t.gpu):
                i = next((i for i, f in enumerate(self.free) if f >= t.gpu), -1)
                if i < 0:
                    break
                devs = [d for d in range(GPUS_PER_NODE) if d not in self.used_devices[i]][: t.gpu]
                self.used_devices[i].update(devs)
                self.free[i] -= t.gpu
                picks.append((i, devs))
            if len(picks) < len(req.tasks):
                for i, devs in picks:
                    self.used_devices[i].difference_update(devs)
                    self.free[i] += len(devs)
                self._head = req.key
                break
            self.total_free -= need
            self.held[req.key] = picks
            tasks = {
                (t.role, t.index): TaskPlacement(self.names[i], "127.0.0.1", devs)
                for t, (i, devs) in zip(sorted(req.tasks, key=lambda t: -t.gpu), picks, strict=True)
            }
            decision.placed.append(GangPlacement(req.key, req.attempt, tasks))
            if self.decision_times is not None:
                self.decision_times.append(time.perf_counter() - t0)
        return decision

    def release(self, key: str) -> None:
        for i, devs in self.held.pop(key, []):
            self.used_devices[i].difference_update(devs)
            self.free[i] += len(devs)
            self.total_free += len(devs)

    def restore(self, placement: GangPlacement, request: GangRequest | None = None) -> None:
        raise NotImplementedError

    def why_waiting(self, key: str) -> WaitInfo | None:
        return WaitInfo("behind the head of the FIFO queue", 1) if key != self._head else WaitInfo("head", 1)


# ------------------------------------------------------------------------------------------ driver
@dataclass
class PhaseStats:
    pods: int = 0
    gangs: int = 0
    wall: float = 0.0  # inside schedule() + release()
    calls: list[float] = field(default_factory=list)
    decisions: list[float] = field(default_factory=list)
    preemptions: int = 0

    def rate(self) -> float:
        return self.pods / self.wall if self.wall > 0 else 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * len(v) + 0.5) - 1))]


def run(
    kind: str, layout: Layout, jobs: list[Job], extra: list[Job], steady_pods: int, max_wall: float
) -> dict:
    sched: Scheduler = HivedScheduler(layout) if kind == "hived" else FifoFirstFit(layout)
    sched.decision_times = []  # type: ignore[attr-defined]
    by_key = {j.key: j for j in jobs + extra}
    attempts: dict[str, int] = {}
    queue: dict[str, GangRequest] = {}
    if kind == "hived":  # what the API does at submit time; rejected jobs never reach the queue
        for j in jobs:
            try:
                sched.check(j.request())
            except ValueError:
                continue
            queue[j.key] = j.request()
    else:
        queue = {j.key: j.request() for j in jobs}
    running: dict[str, int] = {}  # key -> end time
    ends: list[tuple[int, str]] = []
    now = 0
    stats = {"fill": PhaseStats(), "steady": PhaseStats()}

    def call_schedule(ph: PhaseStats) -> Decision:
        n0 = len(sched.decision_times)  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        d = sched.schedule(list(queue.values()))
        dt = time.perf_counter() - t0
        ph.wall += dt
        ph.calls.append(dt)
        ph.decisions.extend(sched.decision_times[n0:])  # type: ignore[attr-defined]
        for p in d.placed:
            queue.pop(p.key)
            j = by_key[p.key]
            running[p.key] = now + j.duration
            heapq.heappush(ends, (now + j.duration, p.key))
            ph.gangs += 1
            ph.pods += len(p.tasks)
        for v in d.preempt:  # the controller stops victims at once; they go back to the queue
            ph.preemptions += 1
            t0 = time.perf_counter()
            sched.release(v)
            ph.wall += time.perf_counter() - t0
            running.pop(v, None)
            attempts[v] = attempts.get(v, 0) + 1
            queue[v] = by_key[v].request(attempts[v])
        return d

    # phase 1: fill
    fill = stats["fill"]
    while True:
        d = call_schedule(fill)
        if not d.placed and not d.preempt:
            break
    used = sum(j.tasks * j.gpus for k in running if (j := by_key[k]))
    total = sum(len(c.children) for c in layout.physical_cells) * GPUS_PER_NODE
    utilization = used / total

    # phase 2: steady state
    steady = stats["steady"]
    arrivals = iter(extra)
    wall0 = time.perf_counter()
    while steady.pods < steady_pods and ends and time.perf_counter() - wall0 < max_wall:
        now = ends[0][0]
        while ends and ends[0][0] <= now:
            _t, key = heapq.heappop(ends)
            if running.get(key) != _t:
                continue  # preempted earlier
            del running[key]
            t0 = time.perf_counter()
            sched.release(key)
            steady.wall += time.perf_counter() - t0
            j = next(arrivals, None)
            if j is not None:
                j.submit = max(j.submit, now + len(jobs))
                by_key[j.key] = j
                queue[j.key] = j.request()
        for _round in range(8):
            d = call_schedule(steady)
            if not d.preempt:
                break
    return {"kind": kind, "utilization": utilization, **stats}


def report(results: list[dict]) -> None:
    print(
        f"{'scheduler':<9} {'phase':<7} {'pods':>7} {'gangs':>6} {'pods/s':>9} {'dec p50':>9} {'dec p99':>9} "
        f"{'call p50':>9} {'call p99':>9} {'preempt':>7}"
    )
    for r in results:
        for phase in ("fill", "steady"):
            ph: PhaseStats = r[phase]
            print(
                f"{r['kind']:<9} {phase:<7} {ph.pods:>7} {ph.gangs:>6} {ph.rate():>9.0f} "
                f"{pct(ph.decisions, 50) * 1e3:>7.3f}ms {pct(ph.decisions, 99) * 1e3:>7.3f}ms "
                f"{pct(ph.calls, 50) * 1e3:>7.2f}ms {pct(ph.calls, 99) * 1e3:>7.2f}ms {ph.preemptions:>7}"
            )
    for r in results:
        print(f"{r['kind']}: GPU utilization after fill {r['utilization'] * 100:.1f} %")
    h = next(r for r in results if r["kind"] == "hived")
    f = next(r for r in results if r["kind"] == "fifo")
    for phase in ("fill", "steady"):
        a, b = h[phase], f[phase]
        ratio = a.rate() / b.rate() if b.rate() else float("inf")
        print(f"{phase}: hived/fifo placements/s = {ratio:.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500 nodes, 1,000 jobs")
    ap.add_argument("--nodes", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument(
        "--steady-pods", type=int, default=None, help="stop the steady phase after this many pods"
    )
    ap.add_argument("--max-wall", type=float, default=60.0, help="wall seconds per steady phase at most")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="cProfile the HiveD run, print the top functions")
    args = ap.parse_args(argv)
    nodes = args.nodes or (500 if args.quick else 5000)
    njobs = args.jobs or (1000 if args.quick else 10000)
    steady_pods = args.steady_pods or (2000 if args.quick else 20000)
    t0 = time.perf_counter()
    layout = build_layout(nodes)
    print(
        f"cluster: {nodes} nodes x {GPUS_PER_NODE} GPUs in racks of {NODES_PER_RACK}, VCs {VC_SHARES}; "
        f"{njobs} queued jobs, then steady state until {steady_pods} more pods (layout built in "
        f"{time.perf_counter() - t0:.1f} s)"
    )
    results = []
    for kind in ("hived", "fifo"):
        jobs = make_jobs(njobs, args.seed)
        extra = make_jobs(njobs * 4, args.seed + 1, start=njobs)
        if kind == "hived" and args.profile:
            prof = cProfile.Profile()
            prof.enable()
            results.append(run(kind, layout, jobs, extra, steady_pods, args.max_wall))
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        else:
            results.append(run(kind, layout, jobs, extra, steady_pods, args.max_wall))
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
