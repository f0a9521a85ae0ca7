"""ManagedScheduler: per-user limits inside a VC hold a user's extra gangs back with a readable reason."""

from __future__ import annotations

from openxpu_server.scheduler.base import GangRequest, TaskRequest
from openxpu_server.scheduler.hived import HivedScheduler
from openxpu_server.scheduler.layout import single_box_layout
from openxpu_server.scheduler.vc_admin import ManagedScheduler, UserLimits


def box() -> ManagedScheduler:
    return ManagedScheduler(HivedScheduler(single_box_layout(node="n", cpus=16, memory_mb=16384, gpus=list(range(8)))))


def gang(key: str, user: str, gpus: int, t: int) -> GangRequest:
    return GangRequest(key, 0, user, "default", 100, t, [TaskRequest("w", 0, 1, 100, gpus)])


def test_max_jobs_per_user_counts_held_and_just_admitted_gangs():
    s = box()
    s.set_limits("default", UserLimits(max_jobs_per_user=2))
    d = s.schedule([gang("a1", "ann", 1, 1), gang("a2", "ann", 1, 2), gang("a3", "ann", 1, 3), gang("b1", "bob", 1, 4)])
    assert sorted(p.key for p in d.placed) == ["a1", "a2", "b1"]
    assert "maxJobsPerUser is 2" in s.why_waiting("a3").reason and "already runs 2" in s.why_waiting("a3").reason
    s.release("a1")
    assert [p.key for p in s.schedule([gang("a3", "ann", 1, 3)]).placed] == ["a3"]


def test_max_gpu_per_user_and_no_limits_elsewhere():
    s = box()
    s.set_limits("default", UserLimits(max_gpu_per_user=3))
    d = s.schedule([gang("a1", "ann", 2, 1), gang("a2", "ann", 2, 2)])
    assert [p.key for p in d.placed] == ["a1"]
    assert "uses 2 GPU(s)" in s.why_waiting("a2").reason and "needs 2" in s.why_waiting("a2").reason
    s.set_limits("default", None)
    assert [p.key for p in s.schedule([gang("a2", "ann", 2, 2)]).placed] == ["a2"]
