"""The simulated backend through the Backend interface: durations, exit codes, stop, recover,
logs, restart re-adoption, speed-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openxpu_server.backends.base import TaskHandle, TaskLaunch
from openxpu_server.backends.simulated import SimulatedBackend, VirtualClock, script_duration


@pytest.fixture
def clock():
    return VirtualClock(1000.0)


@pytest.fixture
def make_task(tmp_path):
    n = [0]

    def factory(script: str = "true", env: dict | None = None) -> TaskLaunch:
        n[0] += 1
        return TaskLaunch("alice~job", "worker", 0, 0, n[0], script, env or {}, str(tmp_path / f"try-{n[0]}"), [0, 1])

    return factory


def test_duration_from_env_and_exit_code(clock, make_task):
    b = SimulatedBackend(clock)
    h = b.launch(make_task("sleep 999", {"OPENXPU_SIM_DURATION": "30", "OPENXPU_SIM_EXIT_CODE": "3"}))
    assert h.pid is None and b.poll(h) is None
    clock.advance(29.9)
    assert b.poll(h) is None
    clock.advance(0.1)
    exit_ = b.poll(h)
    assert exit_.exit_code == 3 and "ran 30 s" in exit_.diagnostics
    assert "simulated run time 30 s ($OPENXPU_SIM_DURATION), exit code 3" in exit_.log_tail
    assert b.poll(h).exit_code == 3  # stays finished


def test_duration_from_sleep_commands_and_script_assignments(clock, make_task):
    assert script_duration("echo hi\nsleep 10\npython x.py && sleep 1.5m; sleep 2h") == 10 + 90 + 7200
    assert script_duration("no-sleep 5; time.sleep(3)") is None
    b = SimulatedBackend(clock)
    h = b.launch(make_task("echo start\nsleep 60\n"))
    clock.advance(59)
    assert b.poll(h) is None
    clock.advance(1)
    assert b.poll(h).exit_code == 0
    h2 = b.launch(make_task("export OPENXPU_SIM_DURATION=5\nexport OPENXPU_SIM_EXIT_CODE=1\nsleep 100"))
    clock.advance(5)
    assert b.poll(h2).exit_code == 1
    h3 = b.launch(make_task("echo nothing to wait for"))
    assert b.poll(h3).exit_code == 0  # default duration 0


def test_speedup_scales_time(clock, make_task):
    b = SimulatedBackend(clock, speedup=60)
    h = b.launch(make_task("sleep 1h"))
    clock.advance(59)
    assert b.poll(h) is None
    clock.advance(1)
    assert b.poll(h).exit_code == 0


def test_stop_ends_with_143_or_137_without_grace(clock, make_task):
    b = SimulatedBackend(clock)
    h = b.launch(make_task("sleep 100"))
    clock.advance(10)
    b.stop(h, grace_seconds=30)
    exit_ = b.poll(h)
    assert exit_.exit_code == 143 and "after 10 simulated s" in exit_.diagnostics
    b.stop(h, 30)  # again: no-op
    assert b.poll(h).exit_code == 143
    h2 = b.launch(make_task("sleep 100"))
    b.stop(h2, 0)
    assert b.poll(h2).exit_code == 137
    h3 = b.launch(make_task("sleep 1"))
    clock.advance(5)
    b.stop(h3, 30)  # it had finished already: its own exit code stands
    assert b.poll(h3).exit_code == 0


def test_launch_is_idempotent_per_work_dir(clock, make_task):
    b = SimulatedBackend(clock)
    task = make_task("sleep 10")
    h = b.launch(task)
    clock.advance(5)
    assert b.launch(task) == h  # not restarted: still ends at t0 + 10
    clock.advance(5)
    assert b.poll(h).exit_code == 0


def test_recover_and_restart(clock, make_task, tmp_path):
    b = SimulatedBackend(clock)
    h = b.launch(make_task("sleep 20"))
    again = SimulatedBackend(clock)  # an engine restart: a new backend, the same clock and files
    adopted = again.recover(TaskHandle(h.work_dir, node="n1"))
    assert adopted is not None and adopted.node == "n1"
    assert again.poll(adopted) is None
    clock.advance(20)
    assert again.poll(adopted).exit_code == 0
    # an attempt recorded but never launched: recover claims it, so it never starts
    never = make_task("sleep 20")
    assert again.recover(TaskHandle(never.work_dir)) is None
    h2 = again.launch(never)
    exit_ = again.poll(h2)
    assert exit_.exit_code == -120 and "never started" in exit_.diagnostics
    # stop before launch
    ghost = TaskHandle(str(tmp_path / "ghost"))
    again.stop(ghost, 10)
    assert again.poll(ghost).exit_code == 143


def test_log_files_are_small_generated_files(clock, make_task):
    b = SimulatedBackend(clock)
    h = b.launch(make_task("sleep 1"))
    files = b.log_files(h)
    assert set(files) == {"stdout", "stderr", "all"}
    assert all(os.path.exists(p) for p in files.values())
    clock.advance(1)
    b.poll(h)
    text = Path(files["all"]).read_text()
    assert "alice~job worker-0" in text and "GPUs 0,1" in text and "exited with code 0" in text
    assert os.path.getsize(files["all"]) < 1000 and Path(files["stderr"]).read_text() == ""


def test_wall_clock_default(make_task):
    b = SimulatedBackend(speedup=1e6)
    h = b.launch(make_task("sleep 1"))
    import time

    time.sleep(0.01)
    assert b.poll(h).exit_code == 0
    with pytest.raises(ValueError):
        SimulatedBackend(speedup=0)
    with pytest.raises(ValueError):
        VirtualClock().advance(-1)
