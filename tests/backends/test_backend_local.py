"""LocalBackend with real processes: exit codes, env, logs, rotation, stop and process groups."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import pid_gone, wait_exit, wait_for

from openxpu_server.backends.base import TaskHandle
from openxpu_server.backends.local import LocalBackend


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("true", 0),
        ("exit 3", 3),
        ("false\necho never-reached", 1),  # errexit: the first failing line ends the task
        ("kill -USR1 $$", 128 + signal.SIGUSR1),
        ("kill -SEGV $$", 128 + signal.SIGSEGV),
    ],
)
def test_exit_code_is_recorded(backend, make_task, script, code):
    task = make_task(script)
    handle = backend.launch(task)
    assert handle.pid and handle.pid_create_time
    result = wait_exit(backend, handle)
    assert result.exit_code == code
    assert Path(task.work_dir, "exit_code").read_text().splitlines()[0] == str(code)
    if code > 128:
        assert "killed by SIG" in result.diagnostics
    assert "never-reached" not in result.log_tail
    # idempotent: polling again gives the same answer
    assert backend.poll(handle).exit_code == code


def test_env_and_work_dir_reach_the_task(backend, make_task, monkeypatch):
    monkeypatch.setenv("OPENXPU_TEST_HOST_VAR", "from-host")
    task = make_task(
        'echo "$FOO|$PAI_JOB_NAME|$OPENXPU_TEST_HOST_VAR|$PAI_WORK_DIR|$PWD"',
        env={"FOO": "bar baz", "PAI_JOB_NAME": "alice~job", "OPENXPU_TEST_HOST_VAR": "overridden"},
    )
    result = wait_exit(backend, backend.launch(task))
    assert result.exit_code == 0
    assert result.log_tail == f"bar baz|alice~job|overridden|{task.work_dir}|{task.work_dir}\n"


def test_task_files_and_log_files(backend, make_task):
    task = make_task("echo hi", env={"SECRET": "x"})
    handle = backend.launch(task)
    wait_exit(backend, handle)
    wd = Path(task.work_dir)
    assert (wd / "script.sh").read_text() == "echo hi\n"
    assert '"SECRET": "x"' in (wd / "task.json").read_text()
    assert (wd / "task.json").stat().st_mode & 0o077 == 0
    assert backend.log_files(handle) == {name: str(wd / name) for name in ("stdout", "stderr", "all")}


def test_stdout_stderr_all_in_order(backend, make_task):
    script = "\n".join(
        [
            "echo out1",
            "sleep 0.15",
            "echo err1 >&2",
            "sleep 0.15",
            "echo out2",
            "sleep 0.15",
            "echo err2 >&2",
            "printf 'no newline at the end'",
        ]
    )
    task = make_task(script)
    handle = backend.launch(task)
    result = wait_exit(backend, handle)
    logs = {k: Path(v).read_text() for k, v in backend.log_files(handle).items()}
    assert logs["stdout"] == "out1\nout2\nno newline at the end"
    assert logs["stderr"] == "err1\nerr2\n"
    assert logs["all"] == "out1\nerr1\nout2\nerr2\nno newline at the end"
    assert result.log_tail == logs["all"]


def test_lines_reach_the_logs_while_the_task_runs(backend, make_task):
    task = make_task("echo first line\nprintf 'progress 50%%'\nsleep 30")
    handle = backend.launch(task)
    all_log = Path(backend.log_files(handle)["all"])
    t0 = time.monotonic()
    wait_for(lambda: all_log.exists() and "first line\n" in all_log.read_text(), timeout=5, interval=0.005)
    # an unterminated line is flushed to "all" after ~100 ms
    wait_for(lambda: "progress 50%" in all_log.read_text(), timeout=5, interval=0.005)
    assert time.monotonic() - t0 < 2.0
    assert Path(backend.log_files(handle)["stdout"]).read_text() == "first line\nprogress 50%"
    assert backend.poll(handle) is None
    backend.stop(handle, 0)
    assert wait_exit(backend, handle).exit_code == 137


@pytest.mark.parametrize("backups", [1, 2])
def test_log_rotation_keeps_files_bounded(make_task, backups):
    backend = LocalBackend(log_max_bytes=200, log_backups=backups)
    script = 'for i in $(seq 1 300); do echo "line $i"; echo "err $i" >&2; done\nprintf "%0500d\\n" 7'
    task = make_task(script)
    handle = backend.launch(task)
    assert wait_exit(backend, handle).exit_code == 0
    wd = Path(task.work_dir)
    for name in ("stdout", "stderr", "all"):
        kept = [wd / name] + [wd / f"{name}.{i}" for i in range(1, backups + 1)]
        for f in kept:
            assert f.exists() and f.stat().st_size <= 200, (f, f.stat().st_size)
        assert not (wd / f"{name}.{backups + 1}").exists()
    # what is kept is the newest output, in order; the 501-byte line was split across files
    full = "".join(f"line {i}\n" for i in range(1, 301)) + "0" * 499 + "7\n"
    kept = "".join((wd / n).read_text() for n in [f"stdout.{i}" for i in range(backups, 0, -1)] + ["stdout"])
    assert len(kept) > 100 * backups and full.endswith(kept)
    assert (wd / "stderr").read_text().endswith("err 300\n")


def test_stop_ends_a_sleeping_task_with_143(backend, make_task):
    handle = backend.launch(make_task("sleep 1000"))
    wait_for(lambda: Path(handle.work_dir, "claim").exists())
    time.sleep(0.1)
    assert backend.poll(handle) is None
    t0 = time.monotonic()
    backend.stop(handle, grace_seconds=30)
    assert time.monotonic() - t0 < 0.5  # does not block for the grace period
    result = wait_exit(backend, handle, timeout=5)
    assert result.exit_code == 143
    assert "SIGTERM" in result.diagnostics
    backend.stop(handle, grace_seconds=30)  # idempotent, no error once gone


def test_stop_kills_a_task_ignoring_sigterm_after_the_grace(backend, make_task):
    task = make_task("trap '' TERM\necho ready\nsleep 1000")
    handle = backend.launch(task)
    wait_for(lambda: "ready" in Path(task.work_dir, "all").read_text() if Path(task.work_dir, "all").exists()
             else False)
    t0 = time.monotonic()
    backend.stop(handle, grace_seconds=0.5)
    time.sleep(0.3)
    assert backend.poll(handle) is None  # SIGTERM ignored: still running within the grace
    result = wait_exit(backend, handle, timeout=5)
    assert time.monotonic() - t0 >= 0.5
    assert result.exit_code == 137
    assert "launcher" in result.diagnostics
    assert not Path(task.work_dir, "exit_code").exists()
    assert pid_gone(handle.pid)


def test_stop_kills_the_whole_process_group(backend, make_task):
    task = make_task("sleep 1000 &\necho $! > bg.pid\nsleep 1000")
    handle = backend.launch(task)
    bg = Path(task.work_dir, "bg.pid")
    wait_for(lambda: bg.exists() and bg.read_text().strip())
    bg_pid = int(bg.read_text())
    assert not pid_gone(bg_pid)
    backend.stop(handle, grace_seconds=5)
    assert wait_exit(backend, handle).exit_code == 143
    wait_for(lambda: pid_gone(bg_pid), timeout=5)


def test_processes_left_behind_are_killed_when_the_script_ends(backend, make_task):
    task = make_task("sleep 1000 &\necho $! > bg.pid\nnohup sleep 1000 >/dev/null 2>&1 &\necho $! > bg2.pid")
    handle = backend.launch(task)
    t0 = time.monotonic()
    assert wait_exit(backend, handle).exit_code == 0
    assert time.monotonic() - t0 < 2.0  # the bg sleep held the stdout pipe; it did not hold us
    for name in ("bg.pid", "bg2.pid"):
        pid = int(Path(task.work_dir, name).read_text())
        wait_for(lambda pid=pid: pid_gone(pid), timeout=5)


def test_leftovers_survive_when_configured(make_task):
    backend = LocalBackend(kill_leftovers=False)
    task = make_task("nohup sleep 1000 >/dev/null 2>&1 &\necho $! > bg.pid")
    handle = backend.launch(task)
    assert wait_exit(backend, handle).exit_code == 0
    pid = int(Path(task.work_dir, "bg.pid").read_text())
    assert not pid_gone(pid)
    os.kill(pid, signal.SIGKILL)


def test_launcher_killed_alone_reports_137_and_kills_the_task(backend, make_task):
    task = make_task("echo $$ > bash.pid\nsleep 1000")
    handle = backend.launch(task)
    pid_file = Path(task.work_dir, "bash.pid")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    bash_pid = int(pid_file.read_text())
    os.kill(handle.pid, signal.SIGKILL)  # only the launcher, not its group
    result = wait_exit(backend, handle)
    assert result.exit_code == 137
    assert "without recording an exit code" in result.diagnostics
    wait_for(lambda: pid_gone(bash_pid), timeout=5)  # at most once: nothing keeps running


def test_missing_command_is_127(backend, make_task):
    result = wait_exit(backend, backend.launch(make_task("no-such-command-xyz")))
    assert result.exit_code == 127
    assert "command not found" in result.log_tail


def test_launcher_that_cannot_start_reports_never_started(make_task):
    backend = LocalBackend(python="/bin/false")
    task = make_task("touch ran")
    handle = backend.launch(task)
    result = wait_exit(backend, handle)
    assert result.exit_code == -120
    assert "never started" in result.diagnostics
    assert not Path(task.work_dir, "ran").exists()
    assert backend.recover(handle) is None  # the engine claimed the dir: it will never run


@pytest.mark.skipif(not shutil.which("setsid"), reason="needs setsid(1)")
def test_a_process_escaping_the_group_does_not_hold_the_exit(backend, make_task):
    task = make_task("setsid sleep 1000 &\necho $! > escaped.pid\nsleep 0.3\necho done")
    handle = backend.launch(task)
    t0 = time.monotonic()
    result = wait_exit(backend, handle)
    assert result.exit_code == 0
    assert time.monotonic() - t0 < 5
    assert "log pipes still open" in result.diagnostics
    assert result.log_tail == "done\n"
    pid = int(Path(task.work_dir, "escaped.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # it left the group: like a container escape, not ours to kill


def test_second_stop_does_not_signal_again(backend, make_task):
    task = make_task("trap 'echo term >> terms' TERM\necho ready\nwhile true; do sleep 0.05 || true; done")
    handle = backend.launch(task)
    wait_for(lambda: Path(task.work_dir, "stdout").exists() and Path(task.work_dir, "stdout").read_text())
    backend.stop(handle, grace_seconds=1.0)
    wait_for(lambda: Path(task.work_dir, "terms").exists())
    backend.stop(handle, grace_seconds=5)  # later deadline: nothing to do
    backend.stop(handle, grace_seconds=0.5)  # earlier deadline: re-armed, still no second SIGTERM
    t0 = time.monotonic()
    assert wait_exit(backend, handle).exit_code == 137
    assert time.monotonic() - t0 < 0.9
    assert Path(task.work_dir, "terms").read_text() == "term\n"


def test_stop_of_an_attempt_whose_dir_was_never_created(backend, tmp_path, make_task):
    handle = TaskHandle(str(tmp_path / "never"))
    backend.stop(handle, grace_seconds=1)
    assert backend.poll(handle).exit_code == 143
    assert backend.launch(make_task("touch ran", name="never")).pid is None
    assert not (tmp_path / "never" / "ran").exists()
