"""The single-box scheduler: whole gangs or nothing, priority then FIFO, readable wait reasons."""

import pytest

from openxpu_server.scheduler import FitScheduler, GangRequest, Node, SchedulerError, TaskRequest


def gang(key, n, cpu=1, gpu=0, priority=10, t=0, mem=100):
    return GangRequest(key, 0, "u", "default", priority, t, [TaskRequest("w", i, cpu, mem, gpu) for i in range(n)])


def box(cpu=4, gpus=2):
    return FitScheduler([Node("box", "127.0.0.1", cpu, 10_000, list(range(gpus)))])


def test_gang_is_placed_whole_or_not_at_all():
    s = box(cpu=4)
    d = s.schedule([gang("a", 3), gang("b", 2, t=1)])
    assert [p.key for p in d.placed] == ["a"]
    assert s.nodes["box"].used_cpu == 3  # nothing of b was kept
    info = s.why_waiting("b")
    assert info.position == 1 and "2 CPUs (1 free)" in info.reason


def test_priority_then_submit_time_and_backfill():
    s = box(cpu=2)
    d = s.schedule([gang("old", 2, t=1), gang("new-prod", 2, priority=100, t=5), gang("small", 1, t=9)])
    assert [p.key for p in d.placed] == ["new-prod"]
    s.release("new-prod")
    d = s.schedule([gang("old", 2, t=1), gang("small", 1, t=9)])
    assert [p.key for p in d.placed] == ["old"]


def test_gpus_are_distinct_devices_and_released():
    s = box(cpu=8, gpus=4)
    d = s.schedule([gang("g", 2, gpu=2)])
    gpus = [p.gpus for p in d.placed[0].tasks.values()]
    assert sorted(sum(gpus, [])) == [0, 1, 2, 3]
    assert s.schedule([gang("h", 1, gpu=1)]).placed == []
    s.release("g")
    assert s.schedule([gang("h", 1, gpu=1)]).placed[0].tasks[("w", 0)].gpus == [0]


def test_restore_retakes_resources():
    s = box(cpu=2, gpus=2)
    placed = s.schedule([gang("a", 1, cpu=2, gpu=2)]).placed[0]
    fresh = box(cpu=2, gpus=2)
    fresh.restore(placed, gang("a", 1, cpu=2, gpu=2))
    assert fresh.schedule([gang("b", 1)]).placed == []
    fresh.release("a")
    assert fresh.schedule([gang("b", 1)]).placed


def test_check_rejects_what_can_never_fit():
    with pytest.raises(SchedulerError, match="gpu 3, but the largest node"):
        box(gpus=2).check(gang("x", 1, gpu=3))
    with pytest.raises(SchedulerError, match="gang of 2 tasks needs cpu 2, memoryMB 200, gpu 4 at once"):
        box(gpus=2).check(gang("x", 2, gpu=2))
    box(gpus=2).check(gang("x", 2, cpu=2, gpu=1))  # fits the idle box at once: accepted
