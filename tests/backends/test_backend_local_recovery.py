"""LocalBackend across engine restarts: re-adoption, recover(), stop deadlines, at most one instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, pid_gone, wait_exit, wait_for

from openxpu_server.backends import launcher
from openxpu_server.backends.base import TaskHandle, TaskLaunch
from openxpu_server.backends.local import LocalBackend

WAIT_FOR_GO = "echo started >> runs\nwhile [ ! -e go ]; do sleep 0.02; done\nexit 7"


def _run_engine_that_dies(task_dir: str, script: str) -> TaskHandle:
    """Start an 'engine' process that launches one task, reports the handle and is SIGKILLed."""
    code = textwrap.dedent(
        f"""
        import json, sys, time
        sys.path.insert(0, {REPO_ROOT!r})
        from openxpu_server.backends.base import TaskLaunch
        from openxpu_server.backends.local import LocalBackend
        h = LocalBackend().launch(TaskLaunch("alice~job", "worker", 0, 0, 0, {script!r}, {{}}, {task_dir!r}))
        print(json.dumps(h.__dict__), flush=True)
        time.sleep(60)
        """
    )
    engine = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        handle = TaskHandle(**json.loads(engine.stdout.readline()))
    finally:
        engine.kill()
        engine.wait()
        engine.stdout.close()
    return handle


def test_new_instance_readopts_a_running_task(backend, make_task):
    task = make_task(WAIT_FOR_GO)
    handle = backend.launch(task)
    wait_for(lambda: Path(task.work_dir, "runs").exists())
    restarted = LocalBackend()
    assert restarted.poll(handle) is None
    Path(task.work_dir, "go").touch()
    result = wait_exit(restarted, handle)
    assert result.exit_code == 7
    assert result.log_tail == ""


def test_task_outlives_a_killed_engine_and_is_readopted(tmp_path):
    wd = str(tmp_path / "t")
    handle = _run_engine_that_dies(wd, WAIT_FOR_GO)
    wait_for(lambda: Path(wd, "runs").exists())
    time.sleep(0.1)
    restarted = LocalBackend()
    assert restarted.poll(handle) is None  # the launcher is not our child, and still running
    found = restarted.recover(TaskHandle(wd))
    assert found.pid == handle.pid
    assert found.pid_create_time == pytest.approx(handle.pid_create_time, abs=1.0)
    Path(wd, "go").touch()
    assert wait_exit(restarted, handle).exit_code == 7
    assert Path(wd, "runs").read_text() == "started\n"


def test_task_finishing_while_the_engine_is_gone(tmp_path):
    wd = str(tmp_path / "t")
    handle = _run_engine_that_dies(wd, "echo bye\nexit 42")
    wait_for(lambda: Path(wd, "exit_code").exists())
    result = wait_exit(LocalBackend(), handle)
    assert result.exit_code == 42
    assert result.log_tail == "bye\n"


def test_stop_by_a_new_instance_of_a_task_launched_by_a_dead_engine(tmp_path):
    wd = str(tmp_path / "t")
    handle = _run_engine_that_dies(wd, "sleep 1000")
    wait_for(lambda: Path(wd, "claim").exists())
    restarted = LocalBackend()
    restarted.stop(handle, grace_seconds=5)
    assert wait_exit(restarted, handle).exit_code == 143


def test_sigkill_deadline_of_a_stop_survives_an_engine_restart(backend, make_task):
    task = make_task("trap '' TERM\necho ready\nsleep 1000")
    handle = backend.launch(task)
    wait_for(lambda: Path(task.work_dir, "stdout").exists() and Path(task.work_dir, "stdout").read_text())
    backend.stop(handle, grace_seconds=0.3)
    for _deadline, timer in backend._timers.values():  # the engine dies: its timer with it
        timer.cancel()
    time.sleep(0.4)
    restarted = LocalBackend()
    restarted.poll(handle)  # past the deadline: the new engine enforces it
    result = wait_exit(restarted, handle, timeout=5)
    assert result.exit_code == 137


def test_recover_without_a_claim_prevents_the_task_forever(tmp_path):
    wd = tmp_path / "t"
    wd.mkdir()
    (wd / "script.sh").write_text("touch ran\n")
    (wd / "task.json").write_text(json.dumps({"env": {}, "script": "touch ran"}))
    backend = LocalBackend()
    assert backend.recover(TaskHandle(str(wd))) is None
    assert json.loads((wd / "claim").read_text())["claimedBy"] == "engine"
    # a launcher that starts late (e.g. the engine died between Popen and recording the pid) gives up
    proc = subprocess.run(
        [sys.executable, "-m", "openxpu_server.backends.launcher", str(wd)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == launcher.CLAIM_LOST_EXIT_STATUS
    assert "already claimed" in proc.stderr
    assert not (wd / "ran").exists() and not (wd / "exit_code").exists()
    assert backend.recover(TaskHandle(str(wd))) is None  # stable
    # launch on a dir the engine claimed starts nothing; poll reports it never started
    relaunched = backend.launch(TaskLaunch("alice~job", "worker", 0, 0, 0, "touch ran", {}, str(wd)))
    assert relaunched.pid is None
    result = backend.poll(relaunched)
    assert result.exit_code == -120 and "never started" in result.diagnostics
    assert not (wd / "ran").exists()


def test_recover_of_a_dir_that_was_never_created(tmp_path):
    assert LocalBackend().recover(TaskHandle(str(tmp_path / "missing"))) is None


def test_recover_finds_a_launched_task(backend, make_task):
    task = make_task("exit 5")
    handle = backend.launch(task)
    wait_for(lambda: Path(task.work_dir, "claim").exists())
    found = LocalBackend().recover(TaskHandle(task.work_dir))
    assert found is not None
    assert found.pid == handle.pid
    assert found.pid_create_time == pytest.approx(handle.pid_create_time, abs=1.0)
    assert wait_exit(LocalBackend(), found).exit_code == 5


def test_launch_twice_runs_one_instance(backend, make_task):
    task = make_task("echo run >> runs\nsleep 0.2\nexit 4")
    first = backend.launch(task)
    second = backend.launch(task)
    assert second == first
    assert wait_exit(backend, first).exit_code == 4
    third = backend.launch(task)  # after the end: still the same attempt, nothing new runs
    assert third.pid == first.pid
    assert backend.poll(third).exit_code == 4
    assert Path(task.work_dir, "runs").read_text() == "run\n"


@pytest.mark.parametrize("attempt", range(5))
def test_racing_launches_from_two_engines_run_one_instance(make_task, attempt):
    task = make_task("echo run >> runs\nexit 9")
    a, b = LocalBackend(), LocalBackend()
    ha, hb = a.launch(task), b.launch(task)
    assert wait_exit(a, ha).exit_code == 9
    assert wait_exit(b, hb).exit_code == 9
    assert Path(task.work_dir, "runs").read_text() == "run\n"
    claim = json.loads(Path(task.work_dir, "claim").read_text())
    assert claim["pid"] in (ha.pid, hb.pid)
    assert claim["create_time"] == pytest.approx(
        ha.pid_create_time if claim["pid"] == ha.pid else hb.pid_create_time, abs=1.0)


def test_stop_before_the_launcher_claims_means_it_never_runs(backend, make_task, tmp_path):
    wd = tmp_path / "t"
    wd.mkdir()
    handle = TaskHandle(str(wd))
    backend.stop(handle, grace_seconds=5)
    result = backend.poll(handle)
    assert result.exit_code == 143 and "before the task started" in result.diagnostics
    assert backend.recover(handle) is None
    task = make_task("touch ran", name="t")
    assert backend.launch(task).pid is None
    assert backend.poll(handle).exit_code == 143
    assert not (wd / "ran").exists()


def test_stop_racing_a_fresh_launch(backend, make_task):
    # Whatever the interleaving, the attempt ends, and reports an exit, quickly.
    for _ in range(5):
        task = make_task("echo run >> runs\nsleep 1000")
        handle = backend.launch(task)
        backend.stop(handle, grace_seconds=0.5)
        result = wait_exit(backend, handle, timeout=5)
        assert result.exit_code in (137, 143)
        wait_for(lambda h=handle: pid_gone(h.pid), timeout=5)


def test_launcher_with_a_broken_config_records_256(tmp_path):
    wd = tmp_path / "t"
    wd.mkdir()
    (wd / "script.sh").write_text("touch ran\n")
    (wd / "launch.cfg").write_bytes(b"not marshal")
    proc = subprocess.run([sys.executable, "-m", "openxpu_server.backends.launcher", str(wd)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    result = LocalBackend().poll(TaskHandle(str(wd)))
    assert result.exit_code == 256 and "launcher error" in result.diagnostics
    assert not (wd / "ran").exists()


def test_pid_reuse_is_not_mistaken_for_the_task(backend, make_task):
    task = make_task("exit 0")
    handle = backend.launch(task)
    wait_exit(backend, handle)
    os.remove(Path(task.work_dir, "exit_code"))  # pretend the launcher died without recording
    stale = TaskHandle(task.work_dir, os.getpid(), handle.pid_create_time)  # "reused" pid: ours
    claim = Path(task.work_dir, "claim")
    data = json.loads(claim.read_text())
    data["pid"] = os.getpid()
    claim.write_text(json.dumps(data))
    # Our process has another create time: it is not taken for the launcher, and its group
    # (pytest's, when pytest leads one) gets no SIGKILL. Reaching the assert proves it.
    result = LocalBackend().poll(stale)
    assert result.exit_code == 137
