"""Randomized HivedScheduler runs checked against `check_invariants` after every operation.

A toy controller submits gangs (all VCs, priorities, pinned cells, SKUs), schedules, stops preempted
gangs at once and re-queues them, completes running gangs, removes waiting ones, flips node health,
and restarts the scheduler from recorded placements. The scenario tests say what should happen; this
one says the bookkeeping never drifts (free lists, buckets, VC pools, bindings, VC safety).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from openxpu_server.scheduler.base import GangRequest, TaskRequest
from openxpu_server.scheduler.hived import HivedScheduler
from openxpu_server.scheduler.hived.invariants import check_invariants
from openxpu_server.scheduler.layout import load_layout

ROOT = Path(__file__).resolve().parents[2]

RACKS = {
    "physicalCluster": {
        "skuTypes": {"A": {"gpu": 1, "cpu": 4, "memory": 1000}},
        "cellTypes": {
            "PAIR": {"childCellType": "A", "childCellNumber": 2},
            "SOCK": {"childCellType": "PAIR", "childCellNumber": 2},
            "NODE": {"childCellType": "SOCK", "childCellNumber": 2, "isNodeLevel": True},
            "RACK": {"childCellType": "NODE", "childCellNumber": 4},
        },
        "physicalCells": [
            {
                "cellType": "RACK",
                "cellChildren": [
                    {"cellAddress": f"n{r}-{i}", **({"pinnedCellId": "pin1"} if (r, i) == (2, 3) else {})}
                    for i in range(4)
                ],
            }
            for r in range(3)
        ],
    },
    "virtualClusters": {
        "a": {
            "virtualCells": [
                {"cellType": "RACK", "cellNumber": 1},
                {"cellType": "RACK.NODE.SOCK.PAIR", "cellNumber": 2},
            ]
        },
        "b": {
            "virtualCells": [{"cellType": "RACK.NODE", "cellNumber": 3}],
            "pinnedCells": [{"pinnedCellId": "pin1"}],
        },
        "c": {
            "virtualCells": [
                {"cellType": "RACK.NODE.SOCK", "cellNumber": 3},
                {"cellType": "RACK.NODE.SOCK.PAIR.A", "cellNumber": 3},
            ]
        },
    },
}


def play(seed: int, source, steps: int, timeout: float | None) -> None:  # noqa: C901 - a flat event loop
    rnd = random.Random(seed)
    layout = load_layout(source)
    s = HivedScheduler(layout, reservation_timeout=timeout)
    vcs = sorted(layout.virtual_clusters)
    nodes = sorted(s._nodes)
    queue: dict[str, GangRequest] = {}
    running: dict[str, GangRequest] = {}
    t = n = 0
    for _ in range(steps):
        op = rnd.random()
        t += rnd.randint(0, 3000)
        if op < 0.45:  # submit
            n += 1
            vc = rnd.choice(vcs)
            prio = rnd.choice([-1, -1, 10, 10, 100, 120])
            hived = {}
            if vc == "b" and prio >= 0 and rnd.random() < 0.2:
                hived = {"taskRoles": {"w": {"pinnedCellId": "pin1"}}}
            elif rnd.random() < 0.2:
                leaf = rnd.choice(sorted(s._chains_by_leaf))
                hived = {"taskRoles": {"w": {"skuType": leaf, "skuNum": rnd.choice([1, 2, 4])}}}
            tasks = [
                TaskRequest("w", i, 1, 100, rnd.choice([1, 1, 2, 4, 8]))
                for i in range(rnd.choice([1, 1, 1, 2, 3]))
            ]
            r = GangRequest(f"j{n}", 0, "u", vc, prio, t, tasks, hived=hived)
            try:
                s.check(r)
            except ValueError:
                continue
            queue[r.key] = r
        elif op < 0.75:  # schedule; stop preempted gangs at once and re-queue them
            d = s.schedule(list(queue.values()))
            check_invariants(s)
            assert len(set(d.preempt)) == len(d.preempt)
            for p in d.placed:
                running[p.key] = queue.pop(p.key)
            assert all(s.why_waiting(k) is not None for k in queue)
            for v in d.preempt:
                r = running.pop(v)
                s.release(v)
                queue[v] = GangRequest(
                    r.key,
                    r.attempt + 1,
                    r.user,
                    r.virtual_cluster,
                    r.priority,
                    r.submit_time,
                    r.tasks,
                    r.gang,
                    r.hived,
                )
        elif op < 0.8:  # a waiting gang is stopped
            if queue:
                queue.pop(rnd.choice(sorted(queue)))
        elif op < 0.9:  # a running gang completes
            if running:
                k = rnd.choice(sorted(running))
                running.pop(k)
                s.release(k)
        elif op < 0.95:
            node = rnd.choice(nodes)
            s.set_node_health(node, not s.node_health(node) if rnd.random() < 0.6 else True)
        else:  # engine restart: a new scheduler restores the recorded placements
            s2 = HivedScheduler(layout, reservation_timeout=timeout)
            for node in nodes:
                if not s.node_health(node):
                    s2.set_node_health(node, False)
            for k, r in running.items():
                s2.restore(s.placement_of(k), r)
            check_invariants(s2)
            a, b = s.node_status(), s2.node_status()
            assert {k: (v["used"], v["gangs"]) for k, v in a.items()} == {
                k: (v["used"], v["gangs"]) for k, v in b.items()
            }
            s = s2
        check_invariants(s)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("source", ["racks", "gpu-pod", "heterogeneous"])
def test_random_operations_keep_every_invariant(seed, source):
    src = RACKS if source == "racks" else ROOT / "cluster" / "layouts" / f"{source}.yaml"
    play(seed, src, steps=160, timeout=5 if seed % 2 == 0 else None)


def test_benchmark_smoke(capsys):
    spec = importlib.util.spec_from_file_location(
        "scheduler_throughput", ROOT / "benchmarks" / "scheduler_throughput.py"
    )
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scheduler_throughput", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    assert bench.main(["--nodes", "40", "--jobs", "80", "--steady-pods", "60", "--max-wall", "5"]) == 0
    out = capsys.readouterr().out
    assert "hived/fifo placements/s" in out and "hived     steady" in out
