"""Kill `jupyter openxpu` with SIGKILL while jobs run, start it again: every job reaches its right
final state, no task ran twice, no job is missing (ARCHITECTURE invariant 1)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from servers import Server


def job(name: str, ledger: Path, body: str, instances: int = 1, retries: int = 0) -> str:
    return f"""
protocolVersion: 2
name: {name}
type: job
jobRetryCount: {retries}
prerequisites: [{{type: dockerimage, name: img, uri: python:3.11}}]
taskRoles:
  worker:
    instances: {instances}
    dockerImage: img
    resourcePerInstance: {{cpu: 1, memoryMB: 64, gpu: 0}}
    commands:
      - echo "{name} $PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX $FC_FRAMEWORK_ATTEMPT_ID" >> {ledger}
      - {body}
"""


@pytest.mark.parametrize("kill_after", [0.0, 1.5], ids=["while-launching", "while-running"])
def test_sigkill_server_loses_nothing_and_runs_nothing_twice(tmp_path: Path, kill_after: float):
    ledger = tmp_path / "ledger"
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}", "--OpenXPU.cpus=3")
    expected = {
        "ok2": ("SUCCEEDED", job("ok2", ledger, "sleep 3", instances=2)),
        "fails": ("FAILED", job("fails", ledger, "sleep 2; exit 7")),
        "queued": ("SUCCEEDED", job("queued", ledger, "sleep 1")),  # waits: 3 CPUs, 4 tasks ahead
        "retried": ("SUCCEEDED", job(
            "retried", ledger, f"sleep 2; if [ ! -e {tmp_path}/r ]; then touch {tmp_path}/r; exit 3; fi", retries=1
        )),
    }
    try:
        server.start()
        keys = {name: server.submit(text) for name, (_, text) in expected.items()}
        time.sleep(kill_after)
        server.kill()
        time.sleep(1.0)  # tasks go on without the engine
        server.start()
        deadline = time.monotonic() + 90
        states = {}
        while time.monotonic() < deadline:
            states = {name: server.state(key)["state"] for name, key in keys.items()}
            if all(s in ("SUCCEEDED", "FAILED", "STOPPED") for s in states.values()):
                break
            time.sleep(0.3)
        assert states == {name: want for name, (want, _) in expected.items()}
        listed = server.http.get(server.base + "/jobs").json()
        assert sorted(j["name"] for j in listed) == sorted(expected)
    finally:
        server.stop()
    lines = ledger.read_text().splitlines()
    # Each (job, task index, job attempt) started exactly once.
    assert len(lines) == len(set(lines)), f"a task ran twice: {lines}"
    assert sorted(lines) == sorted(
        ["ok2 0 0", "ok2 1 0", "fails 0 0", "queued 0 0", "retried 0 0", "retried 0 1"]
    )
