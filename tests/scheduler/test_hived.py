"""HivedScheduler scenarios, in the spirit of HiveD's table-driven `hived_algorithm_test.go`.

Every scheduling step is followed by `check_invariants`, which recomputes all incremental counters
(free lists, buckets, VC pools, bindings) from scratch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hived_layouts import nodes_layout

from openxpu_server.scheduler.base import GangPlacement, GangRequest, SchedulerError, TaskRequest
from openxpu_server.scheduler.hived import HivedScheduler
from openxpu_server.scheduler.hived.invariants import check_invariants
from openxpu_server.scheduler.layout import load_layout, single_box_layout

LAYOUTS = Path(__file__).resolve().parents[2] / "cluster" / "layouts"


# ------------------------------------------------------------------------------------------ helpers
def gang(
    key: str,
    vc: str,
    tasks: int = 1,
    gpu: int = 1,
    prio: int = 100,
    t: int = 0,
    *,
    cpu: int = 1,
    mem: int = 100,
    hived: dict | None = None,
    attempt: int = 0,
    gang_flag: bool = True,
) -> GangRequest:
    return GangRequest(
        key,
        attempt,
        "u",
        vc,
        prio,
        t,
        [TaskRequest("w", i, cpu, mem, gpu) for i in range(tasks)],
        gang_flag,
        hived or {},
    )


def role(**spec) -> dict:
    """extras.hivedScheduler with `spec` for the task role 'w'."""
    return {"taskRoles": {"w": spec}}


def node_quota(n: int) -> dict:
    return {"virtualCells": [{"cellType": "GPU-NODE", "cellNumber": n}]}


def dgx2(vc1_cells: list[dict]) -> dict:
    """Two 16-GPU DGX-2 nodes forged into 2 -> 4 -> 8 -> 16 GPUs (scheduling.md §1.2, §1.8)."""
    return {
        "physicalCluster": {
            "skuTypes": {"V100": {"gpu": 1, "cpu": 6, "memory": 32768}},
            "cellTypes": {
                "V100-2": {"childCellType": "V100", "childCellNumber": 2},
                "V100-4": {"childCellType": "V100-2", "childCellNumber": 2},
                "V100-8": {"childCellType": "V100-4", "childCellNumber": 2},
                "DGX2": {"childCellType": "V100-8", "childCellNumber": 2, "isNodeLevel": True},
            },
            "physicalCells": [
                {"cellType": "DGX2", "cellAddress": "dgx-a"},
                {"cellType": "DGX2", "cellAddress": "dgx-b"},
            ],
        },
        "virtualClusters": {
            "vc1": {"virtualCells": vc1_cells},
            "vc2": {"virtualCells": [{"cellType": "DGX2", "cellNumber": 1}]},
        },
    }


def make(source, **kw) -> HivedScheduler:
    if isinstance(source, str):
        source = LAYOUTS / f"{source}.yaml"
    return HivedScheduler(load_layout(source), **kw)


def run(s: HivedScheduler, *queue: GangRequest):
    d = s.schedule(list(queue))
    check_invariants(s)
    return d


def nodes_of(p: GangPlacement) -> list[str]:
    return [t.node for _k, t in sorted(p.tasks.items())]


def snapshot(s: HivedScheduler) -> tuple:
    chains = {
        name: ([sorted(d) for d in c.free], list(c.fh), list(c.demand)) for name, c in s._chains.items()
    }
    return s.node_status(), s.vc_status(), s.free_nodes(), chains


# ------------------------------------------------------------------------------------------ buddy
def test_buddy_split_takes_buddies_first_and_merges_back():
    # classroom: one node = 4 NVLink pairs; course101 owns 2 pairs, course102 and course103 one each
    s = make("classroom")
    chain = s._chains["GPU-NODE"]
    assert [len(d) for d in chain.free] == [0, 0, 0, 1]  # one free node cell
    a = run(s, gang("a", "course101", gpu=2)).placed[0]
    assert a.tasks[("w", 0)].cells == ["lab-gpu1/0/0", "lab-gpu1/0/1"]  # node split: pair 0 bound
    assert [len(d) for d in chain.free] == [0, 0, 3, 0]  # its 3 buddies are free pairs
    b = run(s, gang("b", "course102", gpu=2)).placed[0]
    assert b.tasks[("w", 0)].gpus == [2, 3]  # the next pair, not a new split
    s.release("a")
    check_invariants(s)
    assert [len(d) for d in chain.free] == [0, 0, 3, 0]
    s.release("b")
    check_invariants(s)
    assert [len(d) for d in chain.free] == [0, 0, 0, 1]  # merged back into the node


def test_vc_cells_below_node_cap_task_size():
    # a pair-level VC can never run a 4-GPU task (a task never spans two of its cells, HiveD pai#4029)
    s = make("classroom")
    with pytest.raises(
        SchedulerError, match=r"^taskRoles\.w\.resourcePerInstance: a task needs 4 GPU cells .* at most 2 GPU"
    ):
        s.check(gang("x", "course101", gpu=4))
    s.check(gang("x", "course101", tasks=2, gpu=2))


# ------------------------------------------------------------------------------------------ packing
def test_two_4gpu_tasks_land_on_one_node_each_on_one_socket():
    s = make("gpu-pod")
    p = run(s, gang("job42", "nlp", tasks=2, gpu=4)).placed[0]
    assert nodes_of(p) == ["gpu-n1", "gpu-n1"]
    sockets = [{c.split("/")[1] for c in t.cells} for _k, t in sorted(p.tasks.items())]
    assert sockets == [{"0"}, {"1"}]
    assert sorted(p.tasks[("w", 0)].gpus + p.tasks[("w", 1)].gpus) == list(range(8))
    assert p.tasks[("w", 0)].host_ip == "127.0.0.11"


def test_packing_fills_the_fullest_node_and_the_tightest_pair():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)})))
    run(s, gang("a", "v", gpu=3))
    b = run(s, gang("b", "v", gpu=1)).placed[0]
    c = run(s, gang("c", "v", gpu=4)).placed[0]
    assert nodes_of(b) == ["n1"] and b.tasks[("w", 0)].cells == ["n1/0/1/3"]  # completes a's pair
    assert nodes_of(c) == ["n1"] and c.tasks[("w", 0)].gpus == [4, 5, 6, 7]  # the other socket
    d = run(s, gang("d", "v", gpu=8)).placed[0]
    assert nodes_of(d) == ["n2"]
    assert s.free_nodes() == 0


@pytest.mark.parametrize(
    "vc1_cells",
    [
        [{"cellType": "DGX2", "cellNumber": 1}],
        [{"cellType": "DGX2.V100-8.V100-4.V100-2.V100", "cellNumber": 16}],  # quota as 16 single GPUs
        [{"cellType": "DGX2.V100-8", "cellNumber": 1}, {"cellType": "DGX2.V100-8.V100-4", "cellNumber": 2}],
    ],
)
def test_vc_safety_example_one_gpu_jobs_pack_onto_one_node(vc1_cells):
    """§1.8: 16 one-GPU jobs of vc1 all land on one DGX-2, so vc2 can still start a 16-GPU job."""
    s = HivedScheduler(load_layout(dgx2(vc1_cells)))
    queue = [gang(f"j{i}", "vc1", gpu=1, t=i) for i in range(16)]
    d = run(s, *queue)
    assert len(d.placed) == 16
    assert {n for p in d.placed for n in nodes_of(p)} == {"dgx-a"}
    big = run(s, gang("big", "vc2", gpu=16)).placed
    assert len(big) == 1 and nodes_of(big[0]) == ["dgx-b"]
    # a 17th job of vc1 is over quota and waits; it never touches vc2's node
    assert run(s, gang("j16", "vc1", gpu=1)).placed == []


# ------------------------------------------------------------------------------------------ gangs
def test_gang_is_whole_or_nothing_and_a_rejection_changes_nothing():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)})))
    run(s, gang("a", "v", gpu=4))
    before = snapshot(s)
    d = run(s, gang("big", "v", tasks=2, gpu=6, t=1))  # 12 GPUs free in all, but only one node has 6
    assert d.placed == [] and d.preempt == []
    assert snapshot(s) == before
    assert s.why_waiting("big").reason == (
        "vc v: the gang needs 2 nodes with 6 free GPU each, 1 have them; "
        "nothing to borrow outside its quota: the gang needs 2 nodes with 6 idle GPU each, 1 have them"
    )
    run(s, gang("huge", "v", tasks=2, gpu=8, t=2))
    assert s.why_waiting("huge").reason == (
        "vc v: 16 GPU guaranteed, 4 in use by 1 job, this job needs 16; "
        "nothing to borrow outside its quota: needs 16 idle GPU at once, 12 idle in the cluster"
    )
    assert snapshot(s) == before


def test_non_gang_jobs_are_still_placed_whole():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)})))
    p = run(s, gang("a", "v", tasks=3, gpu=4, gang_flag=False)).placed[0]
    assert len(p.tasks) == 3
    assert run(s, gang("b", "v", tasks=2, gpu=4, gang_flag=False)).placed == []  # only 4 GPUs left


# ------------------------------------------------------------------------------------------ VCs
def test_guaranteed_jobs_never_use_another_vcs_quota():
    s = HivedScheduler(load_layout(nodes_layout({"v1": node_quota(1), "v2": node_quota(1)})), borrow=False)
    d = run(s, gang("a", "v1", gpu=8, t=0), gang("b", "v1", gpu=8, t=1))
    assert [p.key for p in d.placed] == ["a"]
    info = s.why_waiting("b")
    assert info.reason == "vc v1: 8 GPU guaranteed, 8 in use by 1 job, this job needs 8"
    assert info.position == 1
    with pytest.raises(
        SchedulerError,
        match=r"^taskRoles: the gang needs 16 GPU cells at once \(2 tasks\), more than virtual cluster 'v1' has \(8 GPU\)",
    ):
        s.check(gang("c", "v1", tasks=2, gpu=8))
    assert s.vc_status()["v2"]["GPU"]["free"] == 8


def test_opportunistic_uses_idle_cells_then_is_preempted_and_the_owner_gets_exactly_those_cells():
    s = HivedScheduler(load_layout(nodes_layout({"v1": node_quota(1), "v2": node_quota(1)})))
    opp = run(s, gang("opp", "v2", tasks=2, gpu=8, prio=-1)).placed[0]
    assert sorted(nodes_of(opp)) == ["n1", "n2"]  # idle cells of both VCs
    assert s.vc_status()["v2"]["GPU"]["opportunistic_used"] == 16
    d = run(s, gang("own", "v1", gpu=8, t=5))
    assert d.placed == [] and d.preempt == ["opp"]
    assert s.why_waiting("own").reason == "waiting for 1 preempted job to stop"
    reserved = [n for n, st in s.node_status().items() if st["reserved"]]
    assert len(reserved) == 1
    # the victim is not listed again while it stops
    assert run(s, gang("own", "v1", gpu=8, t=5)).preempt == []
    s.release("opp")
    check_invariants(s)
    d = run(s, gang("own", "v1", gpu=8, t=5))
    assert [p.key for p in d.placed] == ["own"] and nodes_of(d.placed[0]) == reserved
    assert s.why_waiting("own") is None


def test_opportunistic_jobs_never_take_pinned_cells_and_prefer_unbound_nodes():
    s = make("gpu-pod")
    run(s, gang("nlp1", "nlp", gpu=1))  # binds gpu-n1 to nlp
    d = run(s, *[gang(f"o{i}", "research", gpu=8, prio=-1, t=i) for i in range(4)])
    used = sorted(n for p in d.placed for n in nodes_of(p))
    assert used == ["gpu-n2", "gpu-n3"]  # gpu-n4 is pinned; gpu-n1 has only 7 idle GPUs
    waiting = [gang(f"o{i}", "research", gpu=8, prio=-1, t=i) for i in (2, 3)]
    o = run(s, *waiting, gang("o9", "research", gpu=4, prio=-1, t=9)).placed
    assert nodes_of(o[0]) == ["gpu-n1"]  # idle GPUs of nlp's bound node, as a last resort
    assert s.why_waiting("o2").reason == "opportunistic: needs 8 idle A100 at once, 3 idle in the cluster"
    run(s, *waiting, gang("o10", "research", gpu=4, prio=-1, t=10))
    assert s.why_waiting("o10").reason == "opportunistic: needs 4 idle A100 at once, 3 idle in the cluster"


def test_two_preemptors_never_evict_the_same_victims():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)})))
    run(s, gang("o1", "v", gpu=8, prio=-1, t=0), gang("o2", "v", gpu=8, prio=-1, t=1))
    d1 = run(s, gang("p1", "v", gpu=8, t=10))
    assert d1.preempt in (["o1"], ["o2"])
    d2 = run(s, gang("p1", "v", gpu=8, t=10), gang("p2", "v", gpu=8, t=11))
    assert len(d2.preempt) == 1 and d2.preempt != d1.preempt
    res = {r.key: {lf.idx for _t, _n, leaves in r.picks for lf in leaves} for r in s._reservations.values()}
    assert res["p1"].isdisjoint(res["p2"])
    # both in one pass: still distinct victims
    s2 = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)})))
    run(s2, gang("o1", "v", gpu=8, prio=-1), gang("o2", "v", gpu=8, prio=-1, t=1))
    d = run(s2, gang("p1", "v", gpu=8, t=10), gang("p2", "v", gpu=8, t=11))
    assert sorted(d.preempt) == ["o1", "o2"]


def test_a_preemptor_leaving_the_queue_cancels_its_reservation():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(1)}, nodes=1)))
    run(s, gang("o", "v", gpu=8, prio=-1))
    assert run(s, gang("p", "v", gpu=8)).preempt == ["o"]
    run(s)  # p is gone from the queue: its reservation is dropped
    assert s._reservations == {}
    assert s.node_status()["n1"]["reserved"] == 0 and s.vc_status()["v"]["GPU"]["reserved"] == 0


@pytest.mark.parametrize(
    ("running_prio", "new_prio", "preempts"),
    [(10, 100, True), (100, 120, True), (100, 100, False), (120, 100, False), (0, 1000, True)],
)
def test_intra_vc_only_strictly_higher_priority_preempts(running_prio, new_prio, preempts):
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(1)}, nodes=1)))
    run(s, gang("low", "v", gpu=8, prio=running_prio))
    d = run(s, gang("high", "v", gpu=8, prio=new_prio, t=1))
    assert d.preempt == (["low"] if preempts else [])
    if preempts:
        s.release("low")
        assert [p.key for p in run(s, gang("high", "v", gpu=8, prio=new_prio, t=1)).placed] == ["high"]


def test_opportunistic_victims_go_before_lower_priority_guaranteed_ones():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(1)}, nodes=1)))
    run(s, gang("low", "v", gpu=4, prio=10))
    run(s, gang("opp", "other", gpu=4, prio=-1) if False else gang("opp", "v", gpu=4, prio=-1))
    assert run(s, gang("high", "v", gpu=4, prio=100)).preempt == ["opp"]
    s.release("opp")
    assert run(s, gang("high", "v", gpu=4, prio=100)).placed
    d = run(s, gang("crit", "v", gpu=8, prio=120))
    assert sorted(d.preempt) == ["high", "low"]


# ------------------------------------------------------------------------------------------ borrowing
def two_vcs(**kw) -> HivedScheduler:
    return HivedScheduler(load_layout(nodes_layout({"v1": node_quota(1), "v2": node_quota(1)})), **kw)


def test_a_guaranteed_job_of_a_full_vc_borrows_another_vcs_idle_cells():
    s = two_vcs()
    assert nodes_of(run(s, gang("a", "v1", gpu=8)).placed[0]) == ["n1"]
    d = run(s, gang("b", "v1", gpu=8, t=1))
    assert [p.key for p in d.placed] == ["b"] and nodes_of(d.placed[0]) == ["n2"] and d.preempt == []
    st = s.vc_status()
    assert st["v1"]["GPU"]["used"] == 8 and st["v1"]["GPU"]["jobs"] == 1
    assert st["v1"]["GPU"]["borrowed"] == 8 and st["v1"]["GPU"]["borrowed_jobs"] == 1
    assert st["v1"]["GPU"]["opportunistic_used"] == 0
    assert st["v2"]["GPU"]["free"] == 8  # borrowed cells stay v2's quota
    assert s.node_status()["n2"]["opportunistic"] == 8  # it runs at opportunistic level
    # a third one has nothing left to borrow; the wait reason says both
    run(s, gang("c", "v1", gpu=8, t=2))
    assert s.why_waiting("c").reason == (
        "vc v1: 8 GPU guaranteed, 8 in use by 1 job, this job needs 8 (8 more GPU borrowed outside "
        "its quota by 1 job); nothing to borrow outside its quota: needs 8 idle GPU at once, 0 idle in the cluster"
    )


def test_the_owner_reclaims_borrowed_cells_by_preempting_the_borrower():
    s = two_vcs()
    run(s, gang("a", "v1", gpu=8))
    run(s, gang("b", "v1", gpu=8, prio=1000, t=1))  # borrows n2; its own priority does not protect it
    d = run(s, gang("own", "v2", gpu=8, prio=0, t=5))
    assert d.placed == [] and d.preempt == ["b"]
    assert s.why_waiting("own").reason == "waiting for 1 preempted job to stop"
    s.release("b")
    check_invariants(s)
    d = run(s, gang("own", "v2", gpu=8, prio=0, t=5), gang("b", "v1", gpu=8, prio=1000, t=1, attempt=1))
    assert [p.key for p in d.placed] == ["own"] and nodes_of(d.placed[0]) == ["n2"]
    assert s.vc_status()["v1"]["GPU"]["borrowed"] == 0
    assert d.preempt == ["a"]  # back in its quota with nothing to borrow: it preempts lower priority there


def test_a_borrower_never_preempts_and_borrowing_goes_before_intra_vc_preemption():
    s = two_vcs()
    run(s, gang("a", "v1", gpu=8, prio=100), gang("o", "v2", gpu=8, prio=-1, t=1))
    d = run(s, gang("b", "v1", gpu=8, prio=100, t=2))
    assert d.placed == [] and d.preempt == []  # n2's opportunistic job is not evicted for a borrower
    # a higher priority borrows idle cells rather than preempting its VC's lower-priority job ...
    s = two_vcs()
    run(s, gang("low", "v1", gpu=8, prio=10))
    d = run(s, gang("high", "v1", gpu=8, prio=100, t=1))
    assert [p.key for p in d.placed] == ["high"] and nodes_of(d.placed[0]) == ["n2"] and d.preempt == []
    # ... and preempts it when there is nothing to borrow
    s = two_vcs()
    run(s, gang("low", "v1", gpu=8, prio=10), gang("o", "v2", gpu=8, prio=-1, t=1))
    assert run(s, gang("high", "v1", gpu=8, prio=100, t=2)).preempt == ["low"]


def test_borrow_false_keeps_guaranteed_jobs_inside_their_quota():
    s = two_vcs(borrow=False)
    run(s, gang("a", "v1", gpu=8))
    d = run(s, gang("b", "v1", gpu=8, t=1))
    assert d.placed == [] and d.preempt == []
    assert s.why_waiting("b").reason == "vc v1: 8 GPU guaranteed, 8 in use by 1 job, this job needs 8"
    s = two_vcs(borrow=False)
    run(s, gang("low", "v1", gpu=8, prio=10))
    assert run(s, gang("high", "v1", gpu=8, prio=100, t=1)).preempt == ["low"]


def test_restore_of_a_borrower_keeps_it_borrowing():
    layout = load_layout(nodes_layout({"v1": node_quota(1), "v2": node_quota(1)}))
    s = HivedScheduler(layout)
    reqs = {"a": gang("a", "v1", gpu=8), "b": gang("b", "v1", gpu=8, t=1)}
    placed = run(s, *reqs.values()).placed
    assert [p.key for p in placed] == ["a", "b"]
    fresh = HivedScheduler(layout)
    for p in placed:
        fresh.restore(GangPlacement.from_json(p.key, p.attempt, p.to_json()), reqs[p.key])
    check_invariants(fresh)
    assert fresh.vc_status() == s.vc_status() and fresh.node_status() == s.node_status()
    assert fresh.vc_status()["v1"]["GPU"]["borrowed"] == 8
    assert run(fresh, gang("own", "v2", gpu=8, t=5)).preempt == ["b"]


# ------------------------------------------------------------------------------------------ pinned
def test_pinned_cells_only_for_jobs_naming_them():
    s = make("gpu-pod", borrow=False)
    pin = role(pinnedCellId="vision-reserved")
    p = run(s, gang("pinned", "vision", gpu=8, hived=pin)).placed[0]
    assert nodes_of(p) == ["gpu-n4"]
    # vision's own quota is two sockets; a third 4-GPU job waits although gpu-n4... is busy anyway
    d = run(s, *[gang(f"v{i}", "vision", gpu=4, t=i) for i in range(3)])
    assert len(d.placed) == 2 and all("gpu-n4" not in nodes_of(x) for x in d.placed)
    assert s.why_waiting("v2").reason == (
        "vc vision: 8 A100 guaranteed, 8 in use by 2 jobs, this job needs 4; "
        "its pinned cells (vision-reserved) only take jobs that name them"
    )
    assert run(s, gang("pinned2", "vision", gpu=1, hived=pin)).placed == []
    assert (
        s.why_waiting("pinned2").reason
        == "pinned cell vision-reserved is busy: 0 of 8 A100 free, this job needs 1"
    )
    s.release("pinned")
    assert nodes_of(run(s, gang("pinned2", "vision", gpu=1, hived=pin)).placed[0]) == ["gpu-n4"]
    with pytest.raises(
        SchedulerError,
        match=r"^extras\.hivedScheduler\.taskRoles\.w\.pinnedCellId: pinned cell 'vision-reserved' belongs to the virtual cluster 'vision', not to 'nlp'",
    ):
        s.check(gang("x", "nlp", hived=pin))
    with pytest.raises(
        SchedulerError, match=r"^extras\.hivedScheduler\.taskRoles\.w\.pinnedCellId: opportunistic jobs"
    ):
        s.check(gang("x", "vision", prio=-1, hived=pin))
    with pytest.raises(
        SchedulerError,
        match=r"pinnedCellId: unknown pinned cell 'nope' \(virtual cluster vision has: vision-reserved\)",
    ):
        s.check(gang("x", "vision", hived=role(pinnedCellId="nope")))


# ------------------------------------------------------------------------------------------ health
def test_bad_nodes_are_avoided_and_running_jobs_keep_their_cells():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)}, nodes=3)))
    s.set_node_health("n1", False)
    check_invariants(s)
    a = run(s, gang("a", "v", gpu=8)).placed[0]
    assert nodes_of(a) == ["n2"]
    s.set_node_health("n2", False)  # a keeps running there
    check_invariants(s)
    assert s.placement_of("a") is not None
    b = run(s, gang("b", "v", gpu=8)).placed[0]
    assert nodes_of(b) == ["n3"]
    assert s.free_nodes() == 0
    with pytest.raises(KeyError):
        s.set_node_health("nope", True)


def test_doomed_bad_cells_make_the_shortage_visible_in_one_vc():
    s = HivedScheduler(load_layout(nodes_layout({"v1": node_quota(1), "v2": node_quota(1)})))
    s.set_node_health("n1", False)
    check_invariants(s)
    st = s.vc_status()
    assert (
        st["v1"]["GPU"]["doomed"] == 8 and st["v1"]["GPU"]["unhealthy"] == 8 and st["v1"]["GPU"]["free"] == 0
    )
    assert st["v2"]["GPU"]["doomed"] == 0
    d = run(s, gang("a", "v1", gpu=1), gang("b", "v2", gpu=8))
    assert [p.key for p in d.placed] == ["b"] and nodes_of(d.placed[0]) == ["n2"]
    assert (
        s.why_waiting("a").reason
        == "vc v1: 8 GPU guaranteed, 0 in use by 0 jobs, this job needs 1, 8 on unhealthy nodes; "
        "nothing to borrow outside its quota: needs 1 idle GPU at once, 0 idle in the cluster"
    )
    s.set_node_health("n1", True)
    check_invariants(s)
    assert s.vc_status()["v1"]["GPU"]["doomed"] == 0
    assert nodes_of(run(s, gang("a", "v1", gpu=1)).placed[0]) == ["n1"]


def test_a_reservation_on_a_node_that_turns_bad_is_cancelled():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)}, nodes=3)))
    run(
        s,
        gang("o1", "v", gpu=8, prio=-1),
        gang("o2", "v", gpu=8, prio=-1, t=1),
        gang("o3", "v", gpu=8, prio=-1, t=2),
    )
    d = run(s, gang("p", "v", gpu=8, t=5))
    [victim] = d.preempt
    node = s.placement_of(victim).tasks[("w", 0)].node
    s.set_node_health(node, False)
    check_invariants(s)
    assert s._reservations == {}
    d = run(s, gang("p", "v", gpu=8, t=5))
    assert len(d.preempt) == 1 and d.preempt != [victim]


# ------------------------------------------------------------------------------------------ queue
def test_no_head_of_line_blocking_without_reservation_timeout():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)})))
    run(s, gang("a", "v", gpu=8, t=0), gang("b", "v", gpu=4, t=1))
    queue = [gang("big", "v", tasks=2, gpu=8, t=2), gang("small", "v", gpu=4, t=3_000_000)]
    d = run(s, *queue)
    assert [p.key for p in d.placed] == ["small"]  # backfilled past the waiting big gang
    assert s.why_waiting("big").position == 1


def test_anti_starvation_hold_after_reservation_timeout():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(2)})), reservation_timeout=60)
    run(s, gang("a", "v", gpu=8, t=0), gang("b", "v", gpu=4, t=1))
    big = gang("big", "v", tasks=2, gpu=8, t=1000)
    # a gang submitted within 60 s of big still backfills
    assert [p.key for p in run(s, big, gang("s1", "v", gpu=2, t=30_000)).placed] == ["s1"]
    # one submitted more than 60 s after big triggers a hold: big's cells are reserved, s2 waits
    d = run(s, big, gang("s2", "v", gpu=2, t=70_000))
    assert d.placed == [] and d.preempt == []
    assert s.why_waiting("big").reason.startswith(
        "holding 16 cells for this job (2 free so far, waiting for 3 running jobs"
    )
    assert "held for the older job big (anti-starvation)" in s.why_waiting("s2").reason
    for key in ("a", "b"):
        s.release(key)
        assert run(s, big, gang("s2", "v", gpu=2, t=70_000)).placed == []  # freed cells stay held
    s.release("s1")
    d = run(s, big, gang("s2", "v", gpu=2, t=70_000))
    assert [p.key for p in d.placed] == ["big"]


def test_hold_preempts_opportunistic_jobs_on_the_held_cells():
    s = HivedScheduler(load_layout(nodes_layout({"v": node_quota(1)}, nodes=1)), reservation_timeout=1)
    run(s, gang("g", "v", gpu=4, t=0), gang("o", "v", gpu=4, prio=-1, t=0))
    d = run(s, gang("big", "v", gpu=8, prio=10, t=10), gang("late", "v", gpu=1, prio=10, t=20_000))
    assert d.preempt == ["o"] and d.placed == []


def test_positions_are_per_vc_in_priority_then_submit_order():
    s = HivedScheduler(load_layout(nodes_layout({"v1": node_quota(1), "v2": node_quota(1)})))
    run(s, gang("full1", "v1", gpu=8), gang("full2", "v2", gpu=8))
    queue = [
        gang("a", "v1", gpu=8, prio=10, t=1),
        gang("b", "v1", gpu=8, prio=100, t=2),
        gang("c", "v2", gpu=8, prio=100, t=0),
        gang("d", "v1", gpu=8, prio=-1, t=0),
    ]
    run(s, *queue)
    assert {k: s.why_waiting(k).position for k in "abcd"} == {"a": 2, "b": 1, "c": 1, "d": 3}
    assert s.why_waiting("full1") is None


def test_decisions_are_deterministic():
    def play() -> list:
        s = make("heterogeneous")
        out = []
        q = [
            gang(f"j{i}", ("training", "dev")[i % 2], gpu=(1, 2, 4)[i % 3], prio=(100, -1)[i % 4 == 3], t=i)
            for i in range(12)
        ]
        d = s.schedule(q)
        out.append([(p.key, sorted(p.to_json().items())) for p in d.placed])
        return out

    assert play() == play()


# ------------------------------------------------------------------------------------------ SKUs
def test_sku_type_picks_the_chain_and_sku_num_overrides_resources():
    s = make("heterogeneous")
    v = run(s, gang("v", "training", gpu=1, hived=role(skuType="V100", skuNum=4))).placed[0]
    assert nodes_of(v)[0].startswith("v100-") and len(v.tasks[("w", 0)].gpus) == 4
    a = run(s, gang("a", "training", gpu=2)).placed[0]  # no skuType: chains in layout order (A100 first)
    assert nodes_of(a)[0].startswith("a100-")
    # leaf count from cpu/memory when that is the larger need: 30 CPUs / 12 per A100 -> 3 cells
    c = run(s, gang("c", "training", gpu=1, cpu=30, hived=role(skuType="A100"))).placed[0]
    assert len(c.tasks[("w", 0)].cells) == 3


def test_cpu_only_single_box_schedules_cpu_cores_as_leaf_cells():
    s = HivedScheduler(single_box_layout(node="box", cpus=8, memory_mb=16_000, gpus=[]))
    p = run(s, gang("a", "default", cpu=2, mem=1000, gpu=0)).placed[0]
    t = p.tasks[("w", 0)]
    assert t.node == "box" and t.gpus == [] and t.cells == ["box/0", "box/1"]
    assert run(s, gang("b", "default", cpu=2, mem=6000, gpu=0)).placed[0].tasks[("w", 0)].cells == [
        "box/2",
        "box/3",
        "box/4",
    ]  # memory decides: 6000 MB / 2000 MB per core
    assert run(s, gang("c", "default", cpu=4, gpu=0)).placed == []
    assert s.why_waiting("c").reason == (
        "vc default: 8 CPU guaranteed, 5 in use by 2 jobs, this job needs 4; "
        "nothing to borrow outside its quota: needs 4 idle CPU at once, 3 idle in the cluster"
    )
    with pytest.raises(SchedulerError, match=r"^taskRoles\.w\.resourcePerInstance: a task needs 9 CPU cells"):
        s.check(gang("x", "default", cpu=9, gpu=0))
    with pytest.raises(
        SchedulerError,
        match=r"^taskRoles\.w\.resourcePerInstance: gpu 1 asked, but the cluster cells have no GPUs \(leaf types: CPU\)$",
    ):
        s.check(gang("x", "default", gpu=1))


# ------------------------------------------------------------------------------------------ check
@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            gang("x", "nope"),
            r"^defaults\.virtualCluster: unknown virtual cluster 'nope' \(known: nlp, research, vision\)$",
        ),
        (
            gang("x", "nlp", hived=role(skuType="H100")),
            r"^extras\.hivedScheduler\.taskRoles\.w\.skuType: unknown SKU 'H100' \(known: A100\)$",
        ),
        (
            gang("x", "nlp", hived=role(skuNum=0)),
            r"^extras\.hivedScheduler\.taskRoles\.w\.skuNum: must be an integer >= 1",
        ),
        (
            gang("x", "nlp", gpu=16),
            r"^taskRoles\.w\.resourcePerInstance: a task needs 16 A100 cells \(cpu 1, memoryMB 100, gpu 16\) on one node, but the largest node has 8 A100$",
        ),
        (
            gang("x", "nlp", hived=role(skuType="A100", skuNum=9)),
            r"^extras\.hivedScheduler\.taskRoles\.w\.skuNum: a task needs 9 A100 cells",
        ),
        (
            gang("x", "research", gpu=4),
            r"^taskRoles\.w\.resourcePerInstance: .* the cells of virtual cluster 'research' hold at most 2 A100 on one node$",
        ),
        (
            gang("x", "nlp", tasks=2, gpu=8),
            r"^taskRoles: the gang needs 16 A100 cells at once \(2 tasks\), more than virtual cluster 'nlp' has \(8 A100\)$",
        ),
        (
            gang("x", "vision", tasks=3, gpu=3),
            r"^taskRoles: the gang needs 9 A100 cells at once \(3 tasks\), more than virtual cluster 'vision' has \(8 A100\)$",
        ),
        (
            GangRequest(
                "x", 0, "u", "vision", 100, 0, [TaskRequest("w", i, 1, 1, g) for i, g in enumerate((3, 3, 2))]
            ),
            r"^taskRoles: the gang's tasks \(3, 3, 2 A100 each\) cannot be packed into the cells of virtual cluster 'vision' even when it is idle$",
        ),
        (
            gang("x", "nlp", tasks=4, gpu=8, prio=-1),
            r"^taskRoles: the gang needs 32 A100 cells at once \(4 tasks\), more than the cluster has \(24 A100\)$",
        ),
    ],
)
def test_check_rejects_what_can_never_fit(request_, message):
    s = make("gpu-pod")
    with pytest.raises(SchedulerError, match=message):
        s.check(request_)


def test_check_accepts_what_fits_an_idle_vc_and_invalid_requests_wait_with_the_error():
    s = make("gpu-pod")
    s.check(gang("x", "vision", tasks=2, gpu=4))
    s.check(
        gang("x", "nlp", tasks=3, gpu=8, prio=-1)
    )  # opportunistic: the whole cluster, pinned node excluded
    d = run(s, gang("bad", "nope"))
    assert d.placed == [] and s.why_waiting("bad").reason.startswith("defaults.virtualCluster: unknown")


# ------------------------------------------------------------------------------------------ restore
def test_restore_rebuilds_the_same_state():
    layout = load_layout(LAYOUTS / "gpu-pod.yaml")
    s = HivedScheduler(layout)
    queue = [
        gang("a", "nlp", tasks=2, gpu=2, t=0),
        gang("b", "vision", gpu=3, t=1),
        gang("c", "research", gpu=1, t=2),
        gang("d", "vision", gpu=8, hived=role(pinnedCellId="vision-reserved"), t=3),
        gang("e", "research", tasks=2, gpu=4, prio=-1, t=4),
        gang("f", "nlp", gpu=1, prio=10, t=5),
    ]
    placed = run(s, *queue).placed
    assert len(placed) == 6
    by_key = {r.key: r for r in queue}
    fresh = HivedScheduler(layout)
    for p in placed:
        fresh.restore(GangPlacement.from_json(p.key, p.attempt, p.to_json()), by_key[p.key])
    check_invariants(fresh)
    assert fresh.node_status() == s.node_status()
    assert fresh.vc_status() == s.vc_status()
    assert fresh.free_nodes() == s.free_nodes()
    nxt = [gang("g", "vision", gpu=4, t=9), gang("h", "nlp", gpu=4, t=9)]
    assert [p.to_json() for p in run(fresh, *nxt).placed] == [p.to_json() for p in run(s, *nxt).placed]


def test_restore_over_quota_keeps_the_gang_running_as_opportunistic():
    layout = load_layout(nodes_layout({"v1": node_quota(1), "v2": node_quota(1)}))
    s = HivedScheduler(layout)
    a = run(s, gang("a", "v1", gpu=8)).placed[0]
    b = run(s, gang("b", "v2", gpu=8)).placed[0]
    fresh = HivedScheduler(layout)
    fresh.restore(a, gang("a", "v1", gpu=8))
    fresh.restore(b, gang("b", "v1", gpu=8))  # recorded under a VC that has no quota left
    check_invariants(fresh)
    st = fresh.vc_status()["v1"]["GPU"]
    assert st["borrowed"] == 8 and st["borrowed_jobs"] == 1 and st["opportunistic_used"] == 0
    d = run(fresh, gang("c", "v2", gpu=8))
    assert d.preempt == ["b"]  # v2 reclaims its cell from the downgraded gang


def test_restore_without_cells_uses_node_and_devices():
    layout = load_layout(LAYOUTS / "single-box.yaml")
    s = HivedScheduler(layout)
    from openxpu_server.scheduler.base import TaskPlacement

    p = GangPlacement("old", 0, {("w", 0): TaskPlacement("box", "127.0.0.1", [2, 3])})
    s.restore(p, gang("old", "default", gpu=2))
    check_invariants(s)
    assert s.placement_of("old").tasks[("w", 0)].cells == ["box/2", "box/3"]
    assert run(s, gang("n", "default", gpu=6)).placed[0].tasks[("w", 0)].gpus == [0, 1, 4, 5, 6, 7]


# ------------------------------------------------------------------------------------------ status
def test_vc_status_and_node_status():
    s = make("gpu-pod")
    run(s, gang("a", "nlp", gpu=3), gang("o", "research", gpu=2, prio=-1))
    st = s.vc_status()
    assert st["nlp"]["A100"] == {
        "guaranteed": 8,
        "used": 3,
        "reserved": 0,
        "unhealthy": 0,
        "free": 5,
        "opportunistic_used": 0,
        "doomed": 0,
        "jobs": 1,
        "borrowed": 0,
        "borrowed_jobs": 0,
    }
    assert st["research"]["A100"]["opportunistic_used"] == 2 and st["research"]["A100"]["free"] == 4
    assert st["vision"]["A100"]["guaranteed"] == 16  # 2 sockets + the pinned node
    ns = s.node_status()
    assert ns["gpu-n1"]["used"] == 3 and ns["gpu-n1"]["vcs"] == {"nlp": 8} and ns["gpu-n1"]["gangs"] == ["a"]
    assert ns["gpu-n4"]["pinned"] == ["vision-reserved"]
    assert s.free_nodes() == 2  # gpu-n1 has a, gpu-n2 has the opportunistic job
