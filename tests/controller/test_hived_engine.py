"""The engine with the HiveD cell scheduler: VCs, priorities, preemption and device assignment,
with real processes (a declared single box: 4 GPUs, no real GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobhelpers import wait_for

from openxpu_server.errors import InvalidProtocolError
from openxpu_server.scheduler.hived import HivedScheduler
from openxpu_server.scheduler.layout import load_layout, single_box_layout

ROOT = Path(__file__).resolve().parents[2]


def job(name: str, command: str, *, gpu: int = 1, instances: int = 1, priority: str = "test", vc: str = "default") -> str:
    return f"""
protocolVersion: 2
name: {name}
type: job
prerequisites: [{{type: dockerimage, name: img, uri: python:3.11}}]
defaults: {{virtualCluster: {vc}}}
extras: {{hivedScheduler: {{jobPriorityClass: {priority}}}}}
taskRoles:
  worker:
    instances: {instances}
    dockerImage: img
    resourcePerInstance: {{cpu: 1, memoryMB: 256, gpu: {gpu}}}
    commands: [{command!r}]
"""


@pytest.fixture
def hived_engine(make_engine):
    layout = single_box_layout(node="box", cpus=8, memory_mb=16384, gpus=[0, 1, 2, 3])
    return make_engine(scheduler=HivedScheduler(layout))


def test_gpus_from_cells_reach_cuda_visible_devices(hived_engine, tmp_path: Path):
    out = tmp_path / "devices"
    out.mkdir()
    key = hived_engine.jobs.submit(
        "alice", job("devs", f"echo $CUDA_VISIBLE_DEVICES > {out}/$PAI_TASK_INDEX", gpu=2, instances=2)
    )
    assert wait_for(hived_engine, key) == "SUCCEEDED"
    seen = [(out / str(i)).read_text().strip().split(",") for i in (0, 1)]
    assert sorted(seen[0] + seen[1]) == ["0", "1", "2", "3"]
    # Topology-aware packing: each 2-GPU task gets a buddy pair, not a scattered set.
    assert sorted(sorted(s) for s in seen) == [["0", "1"], ["2", "3"]]


def test_prod_job_preempts_opportunistic_one_which_is_retried_uncounted(hived_engine):
    oppo = hived_engine.jobs.submit("bob", job("scavenger", "sleep 600", gpu=4, priority="oppo"))
    wait_for(hived_engine, oppo, states=("RUNNING",))
    prod = hived_engine.jobs.submit("alice", job("urgent", "echo urgent done", gpu=2, priority="prod"))
    assert wait_for(hived_engine, prod) == "SUCCEEDED"
    s = hived_engine.jobs.detail(oppo)["jobStatus"]
    assert s["retries"] >= 1 and s["retryDetails"]["user"] == 0 and s["retryDetails"]["platform"] == s["retries"]
    first = hived_engine.jobs.detail(oppo, 0)["jobStatus"]
    assert first["appExitCode"] == -101 and "Preempted" in first["appExitTriggerMessage"]
    assert "Preempted" in [e["reason"] for e in hived_engine.jobs.events(oppo)["data"]]
    wait_for(hived_engine, oppo, states=("RUNNING",))  # it comes back once the cells are free
    hived_engine.jobs.set_execution_type(oppo, "STOP")
    assert wait_for(hived_engine, oppo) == "STOPPED"


def test_guaranteed_quota_and_wait_reason(hived_engine):
    first = hived_engine.jobs.submit("alice", job("hold", "sleep 600", gpu=4))
    wait_for(hived_engine, first, states=("RUNNING",))
    second = hived_engine.jobs.submit("alice", job("next", "echo next", gpu=1))
    wait_for(hived_engine, second, states=("WAITING",))
    import time

    deadline = time.monotonic() + 10
    reason = None
    while time.monotonic() < deadline and not reason:
        reason = hived_engine.jobs.detail(second)["jobStatus"]["waitReason"]
        time.sleep(0.1)
    assert reason and "default" in reason and "queue position 1" in reason
    hived_engine.jobs.set_execution_type(first, "STOP")
    assert wait_for(hived_engine, second) == "SUCCEEDED"


def test_unknown_vc_and_oversized_gang_rejected_at_submit(hived_engine):
    with pytest.raises(InvalidProtocolError) as e:
        hived_engine.jobs.submit("alice", job("novc", "true", vc="nosuchvc"))
    assert "virtualCluster" in str(e.value) and "nosuchvc" in str(e.value)
    with pytest.raises(InvalidProtocolError) as e:
        hived_engine.jobs.submit("alice", job("toobig", "true", gpu=4, instances=2))
    assert "taskRoles" in str(e.value) or "default" in str(e.value)


def test_classroom_layout_keeps_courses_apart(make_engine):
    layout = load_layout(ROOT / "cluster" / "layouts" / "classroom.yaml")
    engine = make_engine(scheduler=HivedScheduler(layout))
    vcs = sorted(layout.virtual_clusters)
    assert len(vcs) == 3
    small = min(vcs, key=lambda v: sum(c.cell_number for c in layout.virtual_clusters[v].virtual_cells))
    with pytest.raises(InvalidProtocolError):  # more than that course's quota can ever give
        engine.jobs.submit("student", job("greedy", "true", gpu=4, vc=small))
    key = engine.jobs.submit("student", job("fits", "echo ok", gpu=1, vc=small))
    assert wait_for(engine, key) == "SUCCEEDED"


def test_sku_num_never_gives_fewer_gpus_than_requested(hived_engine, tmp_path: Path):
    out = tmp_path / "devices"
    text = job("skunum", f"echo $CUDA_VISIBLE_DEVICES > {out}", gpu=2).replace(
        "jobPriorityClass: test}", "jobPriorityClass: test, taskRoles: {worker: {skuNum: 1}}}"
    )
    assert "skuNum: 1" in text
    key = hived_engine.jobs.submit("alice", text)
    assert wait_for(hived_engine, key) == "SUCCEEDED"
    assert len(out.read_text().strip().split(",")) == 2
