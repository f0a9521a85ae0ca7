"""The controller with the real local backend: FrameworkController semantics end to end.

Each test runs real processes on a declared 8-CPU, 4-GPU node, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from jobhelpers import make_nodes, wait_for


def job(name: str, roles: str, extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        protocolVersion: 2
        name: {name}
        type: job
        prerequisites:
          - {{type: dockerimage, name: img, uri: python:3.11}}
        """
    ) + textwrap.dedent(extra) + "taskRoles:\n" + textwrap.indent(textwrap.dedent(roles), "  ")


def role(name: str, commands: list[str], instances: int = 1, gpu: int = 0, more: str = "") -> str:
    cmds = "\n".join(f"    - {json.dumps(c)}" for c in commands)
    return (
        f"{name}:\n  instances: {instances}\n  dockerImage: img\n"
        f"  resourcePerInstance: {{cpu: 1, memoryMB: 128, gpu: {gpu}}}\n{more}  commands:\n{cmds}\n"
    )


def test_two_task_job_succeeds_and_records_everything(engine):
    key = engine.jobs.submit("alice", job("ok", role("worker", ["echo hi from $PAI_TASK_INDEX"], instances=2)))
    assert key == "alice~ok"
    assert wait_for(engine, key) == "SUCCEEDED"
    d = engine.jobs.detail(key)
    s = d["jobStatus"]
    assert s["appExitCode"] == 0 and s["attemptState"] == "SUCCEEDED" and s["retries"] == 0
    assert s["appExitTriggerMessage"] in ("All Tasks are completed",) or "SucceededTaskCount" in s["appExitTriggerMessage"]
    tasks = d["taskRoles"]["worker"]["taskStatuses"]
    assert [t["taskIndex"] for t in tasks] == [0, 1]
    assert all(t["taskState"] == "SUCCEEDED" and t["containerExitCode"] == 0 for t in tasks)
    ports = [t["containerPorts"] for t in tasks]
    assert set(ports[0]) == {"ssh", "http"} and ports[0] != ports[1]
    reasons = [e["reason"] for e in engine.jobs.events(key)["data"]]
    assert {"Submitted", "Scheduled", "Started", "Running", "Completed"} <= set(reasons)


def test_failed_task_fails_job_with_runtime_analysis(engine):
    key = engine.jobs.submit("alice", job("imp", role("worker", ["python3 -c 'import no_such_module_xyz'"])))
    assert wait_for(engine, key) == "FAILED"
    s = engine.jobs.detail(key)["jobStatus"]
    assert s["appExitCode"] == 232  # ImportError, from the runtime's log analysis
    assert s["appExitSpec"]["code"] == 232 and s["appExitSpec"]["type"] == "USER_FAILURE"
    assert "FailedTaskCount 1 has reached MinFailedTaskCount 1" in s["appExitTriggerMessage"]
    assert s["appExitTriggerTaskRoleName"] == "worker" and s["appExitTriggerTaskIndex"] == 0
    assert "no_such_module_xyz" in (s["appExitDiagnostics"] or "")


def test_ps_worker_completion_policy_kills_ps_with_minus_220(engine):
    roles = role("ps", ["sleep 600"], more="  completion: {minSucceededInstances: -1}\n") + role(
        "worker", ["echo trained"], instances=2
    )
    key = engine.jobs.submit("alice", job("psw", roles))
    assert wait_for(engine, key) == "SUCCEEDED"
    d = engine.jobs.detail(key)
    ps = d["taskRoles"]["ps"]["taskStatuses"][0]
    assert ps["containerExitCode"] == -220 and ps["originUserExitCode"] == 143
    assert "MinSucceededTaskCount 2" in d["jobStatus"]["appExitTriggerMessage"]


def test_job_retry_counts_user_failures_and_then_succeeds(engine, tmp_path: Path):
    marker = tmp_path / "first-attempt-done"
    cmd = f"if [ -e {marker} ]; then echo second; else touch {marker}; exit 3; fi"
    key = engine.jobs.submit("alice", job("retry", role("worker", [cmd]), extra="jobRetryCount: 2\n"))
    assert wait_for(engine, key) == "SUCCEEDED"
    s = engine.jobs.detail(key)["jobStatus"]
    assert s["retries"] == 1 and s["retryDetails"] == {"user": 1, "platform": 0, "resource": 0}
    assert s["attemptId"] == 1
    first = engine.jobs.detail(key, 0)["jobStatus"]
    assert first["attemptState"] == "FAILED" and first["appExitCode"] == 255  # unrecognised user exit


def test_retries_exhausted_ends_failed(engine):
    key = engine.jobs.submit("alice", job("exhaust", role("worker", ["exit 5"]), extra="jobRetryCount: 1\n"))
    assert wait_for(engine, key) == "FAILED"
    s = engine.jobs.detail(key)["jobStatus"]
    assert s["retries"] == 1 and s["retryDetails"]["user"] == 1


def test_transient_platform_failure_retried_without_counting(engine, tmp_path: Path):
    marker = tmp_path / "killed-once"
    # First attempt dies by SIGKILL (137, a transient platform failure); retried even with jobRetryCount 0.
    cmd = f"if [ -e {marker} ]; then echo fine; else touch {marker}; kill -9 $$; fi"
    key = engine.jobs.submit("alice", job("transient", role("worker", [cmd])))
    assert wait_for(engine, key) == "SUCCEEDED"
    s = engine.jobs.detail(key)["jobStatus"]
    assert s["retries"] == 1 and s["retryDetails"] == {"user": 0, "platform": 1, "resource": 0}


def test_uncounted_platform_retries_are_capped(make_engine):
    engine = make_engine(max_platform_retries=2)
    key = engine.jobs.submit("alice", job("oomloop", role("worker", ["kill -9 $$"])))
    assert wait_for(engine, key) == "FAILED"
    s = engine.jobs.detail(key)["jobStatus"]
    assert s["retries"] == 2 and s["retryDetails"]["platform"] == 2 and s["appExitCode"] == 137
    assert "uncounted platform retries" in engine.jobs.events(key)["data"][0]["message"]


def test_task_retry_only_without_gang_allocation(engine, tmp_path: Path):
    marker = tmp_path / "task-failed-once"
    cmd = f"if [ -e {marker} ]; then echo ok; else touch {marker}; exit 4; fi"
    extra = "extras: {gangAllocation: false}\n"
    key = engine.jobs.submit(
        "alice", job("taskretry", role("worker", [cmd], more="  taskRetryCount: 1\n"), extra=extra)
    )
    assert wait_for(engine, key) == "SUCCEEDED"
    d = engine.jobs.detail(key)
    assert d["jobStatus"]["retries"] == 0
    t = d["taskRoles"]["worker"]["taskStatuses"][0]
    assert t["retries"] == 1 and t["accountableRetries"] == 1
    history = engine.jobs.task_attempts(key, 0, "worker", 0)["attempts"]
    assert [a["containerExitCode"] for a in history] == [255, 0]


def test_stop_running_job(engine):
    key = engine.jobs.submit("alice", job("stopme", role("worker", ["sleep 600"], instances=2)))
    wait_for(engine, key, states=("RUNNING",))
    engine.jobs.set_execution_type(key, "STOP")
    assert wait_for(engine, key) == "STOPPED"
    d = engine.jobs.detail(key)
    assert d["jobStatus"]["appExitCode"] == -210 and d["jobStatus"]["executionType"] == "STOP"
    assert all(t["containerExitCode"] == -210 for t in d["taskRoles"]["worker"]["taskStatuses"])
    assert "StopRequested" in [e["reason"] for e in engine.jobs.events(key)["data"]]


def test_stop_waiting_job_never_starts_it(make_engine):
    engine = make_engine(make_nodes(cpu=1))
    blocker = engine.jobs.submit("alice", job("blocker", role("worker", ["sleep 600"])))
    wait_for(engine, blocker, states=("RUNNING",))
    key = engine.jobs.submit("alice", job("queued", role("worker", ["echo never"])))
    wait_for(engine, key, states=("WAITING",))
    engine.jobs.set_execution_type(key, "STOP")
    assert wait_for(engine, key) == "STOPPED"
    assert engine.jobs.detail(key)["taskRoles"]["worker"]["taskStatuses"][0]["launchedTime"] is None
    engine.jobs.set_execution_type(blocker, "STOP")
    wait_for(engine, blocker)


def test_waiting_reason_queue_order_and_priority(make_engine):
    engine = make_engine(make_nodes(cpu=1))
    blocker = engine.jobs.submit("alice", job("hog", role("worker", ["sleep 600"])))
    wait_for(engine, blocker, states=("RUNNING",))
    low = engine.jobs.submit("alice", job("low", role("worker", ["echo low"])))
    high = engine.jobs.submit(
        "bob", job("high", role("worker", ["echo high"]), extra="extras: {hivedScheduler: {jobPriorityClass: prod}}\n")
    )
    wait_for(engine, low, states=("WAITING",))
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reasons = {k: engine.jobs.detail(k)["jobStatus"]["waitReason"] or "" for k in (low, high)}
        # Two reads are not one snapshot: wait until a pass has seen both jobs queued.
        if "queue position 2" in reasons[low]:
            break
        time.sleep(0.1)
    assert "queue position 1" in reasons[high] and "queue position 2" in reasons[low]
    assert "CPUs" in reasons[low]
    engine.jobs.set_execution_type(blocker, "STOP")
    assert wait_for(engine, high) == "SUCCEEDED"
    assert wait_for(engine, low) == "SUCCEEDED"
    launched = {k: engine.jobs.detail(k)["jobStatus"]["launchedTime"] for k in (low, high)}
    assert launched[high] <= launched[low]


def test_gpus_become_cuda_visible_devices_and_env_contract(engine, tmp_path: Path):
    out = tmp_path / "env"
    out.mkdir()
    cmd = f"env | grep -E '^(PAI_|CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES)' | sort > {out}/$PAI_CURRENT_TASK_ROLE_NAME-$PAI_TASK_INDEX"
    roles = role("trainer", [cmd], instances=2, gpu=2) + role("cpu", [cmd])
    key = engine.jobs.submit("alice", job("gpus", roles))
    assert wait_for(engine, key) == "SUCCEEDED"

    def env_of(name: str) -> dict[str, str]:
        return dict(line.split("=", 1) for line in (out / name).read_text().splitlines())

    t0, t1, c0 = env_of("trainer-0"), env_of("trainer-1"), env_of("cpu-0")
    gpus0, gpus1 = t0["CUDA_VISIBLE_DEVICES"].split(","), t1["CUDA_VISIBLE_DEVICES"].split(",")
    assert len(gpus0) == 2 and len(gpus1) == 2 and not set(gpus0) & set(gpus1)
    assert c0.get("CUDA_VISIBLE_DEVICES", "") == "" and c0["NVIDIA_VISIBLE_DEVICES"] == "none"
    assert t0["PAI_JOB_NAME"] == "alice~gpus" and t0["PAI_USER_NAME"] == "alice"
    assert t0["PAI_TASK_ROLE_LIST"] == "trainer,cpu" or set(t0["PAI_TASK_ROLE_LIST"].split(",")) == {"trainer", "cpu"}
    assert t1["PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX"] == "1"
    assert t0["PAI_HOST_IP_trainer_1"] == "127.0.0.1"
    assert t0["PAI_PORT_LIST_cpu_0_http"] == c0["PAI_CONTAINER_HOST_PORT"]
    assert t0["PAI_RESOURCE_trainer"] == "2,1,128,512"
    detail = engine.jobs.detail(key)["taskRoles"]["trainer"]["taskStatuses"]
    assert sorted(detail[0]["containerGpus"].split(",")) == sorted(gpus0)


def test_job_too_big_for_any_node_is_rejected_at_submit(engine):
    import pytest

    from openxpu_server.errors import InvalidProtocolError

    with pytest.raises(InvalidProtocolError) as e:
        engine.jobs.submit("alice", job("huge", role("worker", ["true"], gpu=8)))
    assert "taskRoles.worker.resourcePerInstance" in str(e.value) and "gpu 4" in str(e.value)
    with pytest.raises(InvalidProtocolError) as e:
        engine.jobs.submit("alice", job("wide", role("worker", ["true"], instances=3, gpu=2)))
    assert "gang of 3 tasks needs" in str(e.value) and "gpu 6" in str(e.value)


def test_secrets_reach_the_task_but_never_the_stored_spec(engine, tmp_path: Path):
    out = tmp_path / "secret"
    extra = "secrets: {token: s3cr3t}\nparameters: {who: bob}\n"
    cmd = f"echo '<% $parameters.who %>:<% $secrets.token %>' > {out}"
    key = engine.jobs.submit("alice", job("secret", role("worker", [cmd]), extra=extra))
    assert wait_for(engine, key) == "SUCCEEDED"
    assert out.read_text().strip() == "bob:s3cr3t"
    assert "s3cr3t" not in engine.jobs.config(key)
    with engine.store.session() as s:
        from openxpu_server.store import Job

        stored = s.query(Job).one().spec
    assert "<% $secrets.token %>" in str(stored["task_roles"]["worker"]["commands"])
