"""The baseline schedulers: first-fit gangs, FIFO's head-of-line blocking, Quota's capacity,
borrowing, backfill and optional reclaim, and their wait reasons."""

from __future__ import annotations

import pytest

from openxpu_server.scheduler.base import GangPlacement, GangRequest, SchedulerError, TaskRequest
from openxpu_server.sim.baselines import FifoScheduler, QuotaScheduler
from openxpu_server.sim.cluster import uniform_layout

T = 0


def gang(key: str, vc: str = "a", tasks: int = 1, gpus: int = 1, priority: int = 10, submit: int | None = None) -> GangRequest:
    global T
    T += 1
    return GangRequest(
        key=key,
        attempt=0,
        user="u",
        virtual_cluster=vc,
        priority=priority,
        submit_time=T if submit is None else submit,
        tasks=[TaskRequest("worker", i, 1, 1024, gpus) for i in range(tasks)],
    )


def keys(decision) -> list[str]:
    return [p.key for p in decision.placed]


def test_first_fit_gang_is_whole_or_nothing():
    s = FifoScheduler(uniform_layout(2, 8))
    d = s.schedule([gang("g", tasks=3, gpus=4)])
    placement = d.placed[0]
    nodes = sorted(p.node for p in placement.tasks.values())
    assert nodes == ["node0", "node0", "node1"]
    assert sorted(g for p in placement.tasks.values() if p.node == "node0" for g in p.gpus) == list(range(8))
    assert all(len(p.cells) == len(p.gpus) == 4 for p in placement.tasks.values())
    assert s.total_free == 4
    assert keys(s.schedule([gang("big", tasks=2, gpus=4)])) == []  # 4 free, 8 needed: nothing taken
    assert s.total_free == 4
    s.release("g")
    assert s.total_free == 16 and all(len(f) == 8 for f in s.free)


def test_fifo_blocks_behind_the_head_and_quota_backfills():
    queue = [gang("big", gpus=8), gang("small", gpus=1), gang("small2", gpus=2)]
    fifo = FifoScheduler(uniform_layout(1, 8))
    fifo.schedule([gang("running", gpus=4, submit=0)])
    assert keys(fifo.schedule(queue)) == []
    head = fifo.why_waiting("big")
    assert head.position == 1 and "first in the FIFO queue" in head.reason and "8 in all" not in head.reason
    assert "needs 1 task(s) of 8 leaf cell(s)" in head.reason and "4 free" in head.reason
    behind = fifo.why_waiting("small2")
    assert behind.position == 3 and "behind big" in behind.reason and "head-of-line" in behind.reason

    quota = QuotaScheduler(uniform_layout(1, 8, {"a": 1}))
    quota.schedule([gang("running", gpus=4, submit=0)])
    assert keys(quota.schedule(queue)) == ["small", "small2"]
    reason = quota.why_waiting("big").reason
    assert "vc a uses 7 of its capacity 8 leaf cells" in reason and "waiting for resources" in reason
    assert quota.why_waiting("small") is None


def test_fifo_ignores_priority_and_vc():
    s = FifoScheduler(uniform_layout(1, 8))
    d = s.schedule([gang("late-prod", vc="x", gpus=8, priority=100, submit=5), gang("early-oppo", vc="y", gpus=8, priority=-1, submit=1)])
    assert keys(d) == ["early-oppo"]


def test_fragmentation_reason():
    s = QuotaScheduler(uniform_layout(2, 8, {"a": 2}))
    s.schedule([gang("x", gpus=5), gang("y", gpus=5)])
    assert keys(s.schedule([gang("z", gpus=6)])) == []
    assert "6 leaf cells are free but fragmented (at most 3 free on one node)" in s.why_waiting("z").reason


def test_quota_serves_the_most_under_served_vc_first_and_lets_vcs_borrow():
    s = QuotaScheduler(uniform_layout(4, 8, {"a": 2, "b": 2}))
    # a borrows everything while b is idle (elastic capacity)
    d = s.schedule([gang(f"a{i}", vc="a", gpus=8) for i in range(4)])
    assert len(d.placed) == 4 and s.used == {"a": 32}
    s.release("a0")
    s.release("a1")
    # b (0 % of its capacity) goes before a (100 %) although a's job is older
    d = s.schedule([gang("a-old", vc="a", gpus=8, submit=0), gang("b1", vc="b", gpus=8), gang("b2", vc="b", gpus=8)])
    assert keys(d) == ["b1", "b2"]
    assert "vc a uses 16 of its capacity 16" in s.why_waiting("a-old").reason


def test_quota_max_capacity_caps_borrowing():
    s = QuotaScheduler(uniform_layout(4, 8, {"a": 1, "b": 3}), max_capacity={"a": 0.5})
    d = s.schedule([gang(f"a{i}", vc="a", gpus=8) for i in range(4)])
    assert len(d.placed) == 2
    assert "would pass its maximum capacity (16 leaf cells)" in s.why_waiting("a2").reason
    # the capacity itself is never capped below the guarantee
    s2 = QuotaScheduler(uniform_layout(4, 8, {"a": 3, "b": 1}), max_capacity=0.25)
    assert len(s2.schedule([gang(f"a{i}", vc="a", gpus=8) for i in range(4)]).placed) == 3


def test_quota_without_reclaim_never_preempts_but_with_reclaim_takes_capacity_back():
    layout = uniform_layout(2, 8, {"a": 1, "b": 1})
    plain = QuotaScheduler(layout)
    plain.schedule([gang("b1", vc="b", gpus=8), gang("b2", vc="b", gpus=8)])
    d = plain.schedule([gang("a1", vc="a", gpus=8)])
    assert d.placed == [] and d.preempt == []

    s = QuotaScheduler(layout, reclaim=True)
    s.schedule([gang("b-old", vc="b", gpus=8, priority=100)])
    s.schedule([gang("b-new", vc="b", gpus=8, priority=100)])
    d = s.schedule([gang("a1", vc="a", gpus=8)])
    assert d.placed == [] and d.preempt == ["b-new"]  # newest job of the borrowing VC
    assert "preempting jobs of VCs over their capacity" in s.why_waiting("a1").reason
    s.release("b-new")
    assert keys(s.schedule([gang("a1", vc="a", gpus=8)])) == ["a1"]
    # a job beyond its VC's capacity does not reclaim
    d = s.schedule([gang("a2", vc="a", gpus=8)])
    assert d.preempt == []


def test_check_rejects_what_can_never_fit():
    s = QuotaScheduler(uniform_layout(2, 8, {"a": 2}))
    with pytest.raises(SchedulerError, match="a task needs 9 leaf cells on one node, but the largest node has 8"):
        s.check(gang("x", gpus=9))
    with pytest.raises(SchedulerError, match="needs 24 leaf cells at once, more than the whole cluster \\(16\\)"):
        s.check(gang("x", tasks=3, gpus=8))
    s.check(gang("ok", tasks=2, gpus=8))


def test_restore_retakes_recorded_cells_and_skuNum_sizes_tasks():
    s = QuotaScheduler(uniform_layout(1, 8, {"a": 1}))
    d = s.schedule([gang("g", gpus=3)])
    recorded = GangPlacement.from_json("g", 0, d.placed[0].to_json())
    fresh = QuotaScheduler(uniform_layout(1, 8, {"a": 1}))
    fresh.restore(recorded, gang("g", gpus=3))
    assert fresh.total_free == 5 and fresh.used == {"a": 3}
    assert keys(fresh.schedule([gang("h", gpus=6)])) == []
    fresh.release("g")
    assert fresh.total_free == 8 and fresh.used == {"a": 0}
    req = gang("sku", gpus=1)
    req.hived = {"taskRoles": {"worker": {"skuNum": 4}}}
    d = fresh.schedule([req])
    assert len(d.placed[0].tasks[("worker", 0)].gpus) == 4
