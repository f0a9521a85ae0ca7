"""Simulated backend: task attempts that only pretend to run, in virtual or scaled time.

For the real engine without real work: demos, scheduler tests at scale, the simulator's cluster
with a real controller. Nothing is executed; a task "runs" from `launch` until its duration has
passed on the backend's clock, then ends with its exit code.

- Duration (virtual seconds): the task env's `OPENXPU_SIM_DURATION`, else an
  `OPENXPU_SIM_DURATION=N` assignment in its script (e.g. `export OPENXPU_SIM_DURATION=600`), else the
  sum of the `sleep N` commands in its script (`N` in seconds, or with an `s`/`m`/`h`/`d` suffix:
  `python train.py && sleep 2h` lasts 7,200 s), else `default_duration` (0: ends at the first poll).
- Exit code: the env's `OPENXPU_SIM_EXIT_CODE`, else an `OPENXPU_SIM_EXIT_CODE=N` assignment in the
  script, else 0.
- Time: `clock()` (default `time.time`, wall seconds) times `speedup`: with speedup 60 a one-hour
  task ends after a minute. Pass a `VirtualClock` to move time by hand (tests, simulations).

Like the local backend, everything lives in the attempt's work dir, so a new backend instance (an
engine restart) with the same clock finds its tasks again: `sim.json` (the task record, written at
launch; launch is idempotent per work dir), `exit_code` (first line the code, then diagnostics,
written when the task ends or is stopped), `claim` (written by `recover` when the attempt never
launched, so it never will) and the logs `stdout`, `stderr`, `all` (a few generated lines).
`stop` ends the task at once with 143 (SIGTERM; 137 when `grace_seconds <= 0`, i.e. SIGKILL);
`poll` returns None while it runs. Handles carry no pid.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable

from .base import Backend, TaskExit, TaskHandle, TaskLaunch
from .launcher import EXIT_CODE, read_exit_code
from .local import (  # the same codes as real tasks
    KILLED_EXIT_CODE,
    LAUNCH_FAILED_EXIT_CODE,
    STOPPED_EXIT_CODE,
)

RECORD = "sim.json"
CLAIM = "claim"
LOG_NAMES = ("stdout", "stderr", "all")
DURATION_ENV = "OPENXPU_SIM_DURATION"
EXIT_CODE_ENV = "OPENXPU_SIM_EXIT_CODE"

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SLEEP = re.compile(r"(?<![\w-])sleep\s+(\d+(?:\.\d*)?|\.\d+)([smhd]?)(?![\w.])")


def _assignment(name: str, script: str) -> str | None:
    found = re.findall(rf"(?<![\w]){name}=[\"']?([-+]?\d+(?:\.\d*)?)", script)
    return found[-1] if found else None


def script_duration(script: str) -> float | None:
    """Seconds of all `sleep N[smhd]` commands in `script`, or None when it has none."""
    matches = _SLEEP.findall(script)
    if not matches:
        return None
    return sum(float(n) * _UNITS[u] for n, u in matches)


class VirtualClock:
    """A clock that moves only when told to: `advance(seconds)` or `set(t)`."""

    def __init__(self, start: float = 0.0):
        self._t = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._t += seconds
            return self._t

    def set(self, t: float) -> None:
        with self._lock:
            if t < self._t:
                raise ValueError("a clock does not go back")
            self._t = float(t)


class SimulatedBackend(Backend):
    """See the module docstring. `clock`: seconds (default wall time); `speedup`: virtual
    seconds per clock second; `default_duration`: for scripts that say nothing."""

    def __init__(self, clock: Callable[[], float] | None = None, speedup: float = 1.0, *, default_duration: float = 0.0):
        if speedup <= 0:
            raise ValueError("speedup must be > 0")
        self.clock = clock or time.time
        self.speedup = float(speedup)
        self.default_duration = float(default_duration)
        self._lock = threading.RLock()

    # -- launch ----------------------------------------------------------------------------------
    def launch(self, task: TaskLaunch) -> TaskHandle:
        wd = os.path.abspath(task.work_dir)
        os.makedirs(wd, exist_ok=True)
        with self._lock:
            if os.path.exists(os.path.join(wd, RECORD)) or os.path.exists(os.path.join(wd, CLAIM)):
                return TaskHandle(wd)  # launched before (or claimed by recover: poll reports it)
            duration, exit_code, where = self._plan(task)
            now = self.clock()
            record = {
                **task.record(),
                "start": now,
                "duration": duration,
                "exit_code": exit_code,
                "speedup": self.speedup,
            }
            _write_atomic(os.path.join(wd, "script.sh"), task.script)
            line = (
                f"[openxpu-sim] {task.key} {task.role}-{task.index} (job attempt {task.job_attempt}, "
                f"task attempt {task.task_attempt}) started; simulated run time {duration:g} s ({where}), "
                f"exit code {exit_code}; GPUs {','.join(map(str, task.gpus)) or 'none'}\n"
            )
            for name in ("stdout", "all"):
                _append(os.path.join(wd, name), line)
            _append(os.path.join(wd, "stderr"), "")
            _write_atomic(os.path.join(wd, RECORD), json.dumps(record, indent=1))
            return TaskHandle(wd)

    def _plan(self, task: TaskLaunch) -> tuple[float, int, str]:
        env = task.env or {}
        raw = env.get(DURATION_ENV)
        where = f"${DURATION_ENV}"
        if raw is None:
            raw, where = _assignment(DURATION_ENV, task.script), f"{DURATION_ENV}= in the script"
        duration: float | None
        try:
            duration = float(raw) if raw is not None else None
        except ValueError:
            duration = None
        if duration is None:
            duration, where = script_duration(task.script), "sleep commands in the script"
        if duration is None:
            duration, where = self.default_duration, "default"
        code_raw = env.get(EXIT_CODE_ENV)
        if code_raw is None:
            code_raw = _assignment(EXIT_CODE_ENV, task.script)
        try:
            code = int(float(code_raw)) if code_raw is not None else 0
        except ValueError:
            code = 0
        return max(0.0, duration), code, where

    # -- poll / stop / recover -------------------------------------------------------------------
    def poll(self, handle: TaskHandle) -> TaskExit | None:
        wd = os.path.abspath(handle.work_dir)
        with self._lock:
            done = self._finished(wd)
            if done is not None:
                return done
            record = self._record(wd)
            if record is None:
                return TaskExit(LAUNCH_FAILED_EXIT_CODE, diagnostics="the task never started: nothing was launched in its work dir")
            elapsed = (self.clock() - record["start"]) * float(record.get("speedup", self.speedup))
            if elapsed < record["duration"]:
                return None
            code = int(record["exit_code"])
            self._end(wd, code, f"the simulated task ran {record['duration']:g} s and exited with {code}")
            return self._finished(wd)

    def stop(self, handle: TaskHandle, grace_seconds: float) -> None:
        wd = os.path.abspath(handle.work_dir)
        with self._lock:
            if os.path.exists(os.path.join(wd, EXIT_CODE)):
                return
            if self._record(wd) is None:  # never launched: make sure it never will be
                os.makedirs(wd, exist_ok=True)
                _write_atomic(os.path.join(wd, CLAIM), json.dumps({"claimedBy": "engine", "reason": "stop"}))
                self._end(wd, STOPPED_EXIT_CODE, "stopped before the task started")
                return
            record = self._record(wd) or {}
            if self.poll(handle) is not None:
                return  # it had ended by itself already
            elapsed = (self.clock() - record["start"]) * float(record.get("speedup", self.speedup))
            if grace_seconds <= 0:
                self._end(wd, KILLED_EXIT_CODE, f"killed by SIGKILL after {elapsed:g} simulated s")
            else:
                self._end(wd, STOPPED_EXIT_CODE, f"stopped (SIGTERM) after {elapsed:g} simulated s")

    def recover(self, handle: TaskHandle) -> TaskHandle | None:
        wd = os.path.abspath(handle.work_dir)
        with self._lock:
            if self._record(wd) is not None:
                return TaskHandle(wd, None, None, handle.node)
            os.makedirs(wd, exist_ok=True)
            if not os.path.exists(os.path.join(wd, CLAIM)):
                _write_atomic(os.path.join(wd, CLAIM), json.dumps({"claimedBy": "engine", "reason": "recover"}))
            return None

    def log_files(self, handle: TaskHandle) -> dict[str, str]:
        wd = os.path.abspath(handle.work_dir)
        return {name: os.path.join(wd, name) for name in LOG_NAMES}

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _record(wd: str) -> dict | None:
        try:
            with open(os.path.join(wd, RECORD), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _end(self, wd: str, code: int, diagnostics: str) -> None:
        line = f"[openxpu-sim] exited with code {code}: {diagnostics}\n"
        for name in ("stdout", "all"):
            _append(os.path.join(wd, name), line)
        _write_atomic(os.path.join(wd, EXIT_CODE), f"{code}\n{diagnostics}\n")

    @staticmethod
    def _finished(wd: str) -> TaskExit | None:
        recorded = read_exit_code(wd)
        if recorded is None:
            return None
        code, diagnostics = recorded
        try:
            with open(os.path.join(wd, "all"), encoding="utf-8", errors="replace") as f:
                tail = f.read()[-64 * 1024 :]
        except OSError:
            tail = ""
        return TaskExit(code, log_tail=tail, diagnostics=diagnostics)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
