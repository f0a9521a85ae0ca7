"""Local backend: every task attempt is a real process group running in its own work dir.

`launch` writes the attempt's files and starts `launcher.py` in a new session (process group
leader, stdin /dev/null, output to `launcher.log`); the launcher claims the work dir, runs
`bash -e script.sh` in its group, tees the output to `stdout`/`stderr`/`all` and writes `exit_code`.
See `launcher.py` for the on-disk protocol. Nothing here depends on the engine process staying
alive: a new `LocalBackend` (after an engine restart) finds tasks again through their work dirs,
so handles from an earlier process work in `poll`/`stop`/`recover` (re-adoption).

At most one instance of an attempt ever runs: whoever creates `claim` in the work dir first wins.
Launchers claim before running anything; the engine claims a dir in `recover` (and in `stop`, and
in `poll` when a launcher died before claiming) so that an attempt reported as never started can
never start later.

Exit codes reported by `poll`: the script's code (0-255); 128+N when it was killed by signal N;
137 when the launcher died without recording one (SIGKILL of the group; any survivors of the
group are SIGKILLed before reporting); `LAUNCH_FAILED_EXIT_CODE` (-120, OpenPAI's
PodCreationTransientError) when the attempt never started; 256 (PAIRuntimeExitAbnormally) when
the launcher hit an internal error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import marshal
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from . import launcher as _launcher
from .base import Backend, TaskExit, TaskHandle, TaskLaunch

LAUNCH_FAILED_EXIT_CODE = -120  # the attempt never started (PodCreationTransientError: retried)
KILLED_EXIT_CODE = 137
STOPPED_EXIT_CODE = 143
CREATE_TIME_TOLERANCE_S = 1.0  # psutil create_time = boot time (clock-adjusted) + start ticks
LAUNCHER_LOG = "launcher.log"
KILL_AT = _launcher.KILL_AT  # SIGKILL deadline of a stop: a restarted engine enforces it, a
# launcher that has not spawned the script yet does not spawn it

# `python -I -S`: no site (the .pth scan costs ~25 ms here), no user site, no PYTHON* env (a task
# env cannot break the launcher's interpreter). The package root is appended to sys.path (after the
# stdlib), so the launcher is imported from its cached .pyc and nothing else of the package loads
# but the two tiny __init__ modules.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv.pop(1)); "
    "from openxpu_server.backends.launcher import main; sys.exit(main())"
)


def _write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _signal_description(code: int) -> str:
    if code > 128:
        try:
            return f"killed by {signal.Signals(code - 128).name}"
        except ValueError:
            return f"killed by signal {code - 128}"
    return ""


_Ident = tuple  # (pid, create_time, start_ticks or None): a launcher process, pid-reuse safe


@dataclasses.dataclass
class _Launched:
    handle: TaskHandle
    procs: list[subprocess.Popen]


class LocalBackend(Backend):
    """Tasks as local process groups. Keyword options:

    log_max_bytes: rotate each of stdout/stderr/all at this size (<= 0: never rotate).
    log_backups: rotated copies kept (`<name>.1` ... `<name>.<n>`; 0: truncate instead).
    kill_leftovers: SIGKILL what the script left running in its process group when it ends.
    log_tail_bytes: how much of the end of `all` goes into `TaskExit.log_tail`.
    python: interpreter for the launcher (default: this one).
    """

    def __init__(
        self,
        *,
        log_max_bytes: int = _launcher.DEFAULT_LOG_MAX_BYTES,
        log_backups: int = _launcher.DEFAULT_LOG_BACKUPS,
        kill_leftovers: bool = True,
        log_tail_bytes: int = 64 * 1024,
        python: str | None = None,
    ) -> None:
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.kill_leftovers = kill_leftovers
        self.log_tail_bytes = log_tail_bytes
        self.python = python or sys.executable
        self._lock = threading.RLock()
        self._launched: dict[str, _Launched] = {}  # launchers this process started, until reaped
        self._claims: dict[str, dict] = {}  # claims never change once written
        self._timers: dict[str, tuple[float, threading.Timer]] = {}  # work dir -> SIGKILL deadline
        self._last_reap = 0.0

    # -- launch ---------------------------------------------------------------------------------

    def launch(self, task: TaskLaunch) -> TaskHandle:
        wd = os.path.abspath(task.work_dir)
        os.makedirs(wd, exist_ok=True)
        with self._lock:
            existing = self._existing(wd)
            if existing is not None:
                return existing
            record = {
                **task.record(),
                "env": {str(k): str(v) for k, v in task.env.items()},
                "script": task.script,
                "launcher": {
                    "log_max_bytes": int(self.log_max_bytes),
                    "log_backups": int(self.log_backups),
                    "kill_leftovers": bool(self.kill_leftovers),
                },
            }
            _write_atomic(os.path.join(wd, _launcher.SCRIPT), (task.script.rstrip("\n") + "\n").encode())
            _write_atomic(os.path.join(wd, _launcher.TASK_JSON), json.dumps(record, indent=1).encode(), 0o600)
            _write_atomic(os.path.join(wd, _launcher.CONFIG), marshal.dumps(record), 0o600)
            with open(os.path.join(wd, LAUNCHER_LOG), "ab") as log:
                proc = subprocess.Popen(
                    [self.python, "-I", "-S", "-c", _BOOTSTRAP, _PACKAGE_ROOT, wd],
                    cwd=wd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            handle = TaskHandle(wd, proc.pid, self._create_time(proc.pid))
            entry = self._launched.get(wd)
            if entry is None:
                self._launched[wd] = _Launched(handle, [proc])
            else:  # an earlier launcher of ours died before claiming
                entry.handle = handle
                entry.procs.append(proc)
            return dataclasses.replace(handle)

    def _existing(self, wd: str) -> TaskHandle | None:
        """The handle of an instance of this attempt that claimed the dir or may still claim it."""
        claim = self._read_claim(wd)
        if claim is not None:
            return self._handle_from_claim(wd, claim)
        entry = self._launched.get(wd)
        if entry is not None and any(p.poll() is None for p in entry.procs):
            return dataclasses.replace(entry.handle)  # our launcher is still starting up
        return None

    # -- poll -----------------------------------------------------------------------------------

    def poll(self, handle: TaskHandle) -> TaskExit | None:
        wd = os.path.abspath(handle.work_dir)
        self._reap(wd)
        done = self._finished(wd)
        if done is not None:
            return done
        claim = self._read_claim(wd)
        if claim is not None:
            if claim.get("claimedBy") != "launcher":
                self._forget(wd)
                return TaskExit(
                    LAUNCH_FAILED_EXIT_CODE,
                    diagnostics=f"the task never started: the engine claimed its work dir "
                    f"({claim.get('reason', 'unknown')}) before any launcher did",
                )
            ident = self._ident(claim)
            pid = ident[0]
            if self._alive(*ident):
                self._enforce_kill_at(wd, ident)
                return None
            done = self._finished(wd)  # it may have written exit_code and exited just now
            if done is not None:
                return done
            self._signal_group(ident, signal.SIGKILL)  # survivors of a launcher killed alone
            self._forget(wd)
            return TaskExit(
                KILLED_EXIT_CODE,
                log_tail=self._log_tail(wd),
                diagnostics=f"the launcher (pid {pid}) ended without recording an exit code: it was "
                "killed (SIGKILL of the task's process group, OOM killer, or host shutdown); "
                "remaining processes of the group were killed",
            )
        # No claim yet: a launcher is starting up, or none ever will claim.
        with self._lock:
            entry = self._launched.get(wd)
            if entry is not None and any(p.poll() is None for p in entry.procs):
                return None
        if handle.pid is not None and self._alive(handle.pid, handle.pid_create_time):
            return None
        if not self._claim_engine(wd, "poll: no launcher claimed the work dir"):
            return self.poll(handle)  # a launcher claimed it meanwhile
        return self._never_started(wd, handle)

    def _never_started(self, wd: str, handle: TaskHandle) -> TaskExit:
        rc = None
        with self._lock:
            entry = self._launched.pop(wd, None)
        for proc in entry.procs if entry else ():
            if handle.pid in (None, proc.pid) and proc.returncode is not None:
                rc = proc.returncode
        tail = self._file_tail(os.path.join(wd, LAUNCHER_LOG), 4096).strip()
        where = f"; launcher.log: {tail}" if tail else ""
        if rc is None:
            return TaskExit(
                KILLED_EXIT_CODE if handle.pid is not None else LAUNCH_FAILED_EXIT_CODE,
                diagnostics=f"the task never started: its launcher (pid {handle.pid}) is gone and never "
                f"claimed the work dir{where}",
            )
        if rc < 0:
            return TaskExit(
                128 - rc,
                diagnostics=f"the task never started: its launcher was {_signal_description(128 - rc)} "
                f"while starting{where}",
            )
        return TaskExit(
            LAUNCH_FAILED_EXIT_CODE,
            diagnostics=f"the task never started: its launcher exited with status {rc}{where}",
        )

    # -- recover / stop -------------------------------------------------------------------------

    def recover(self, handle: TaskHandle) -> TaskHandle | None:
        wd = os.path.abspath(handle.work_dir)
        claim = self._read_claim(wd)
        if claim is None:
            if self._claim_engine(wd, "recover"):
                return None  # no launcher ran, and none ever will
            claim = self._read_claim(wd)
        if claim is None or claim.get("claimedBy") != "launcher":
            return None
        return TaskHandle(wd, claim["pid"], claim.get("create_time"), handle.node)

    def stop(self, handle: TaskHandle, grace_seconds: float) -> None:
        wd = os.path.abspath(handle.work_dir)
        if os.path.exists(os.path.join(wd, _launcher.EXIT_CODE)):
            return
        claim = self._read_claim(wd)
        if claim is None:  # no launcher has claimed the attempt: make sure none ever will
            if self._claim_engine(wd, "stop"):
                _launcher.write_exit_code(wd, STOPPED_EXIT_CODE, "stopped before the task started")
                if handle.pid is not None:  # a launcher starting up would give up anyway; be quick
                    self._signal_group((handle.pid, handle.pid_create_time, None), signal.SIGTERM)
                return
            claim = self._read_claim(wd)
        if claim is None or claim.get("claimedBy") != "launcher":
            return
        ident = self._ident(claim)
        grace = float(grace_seconds)
        if grace <= 0:  # no grace: like a 0 s deletion grace period, straight to SIGKILL
            self._signal_group(ident, signal.SIGKILL)
            return
        deadline = time.time() + grace
        with self._lock:
            current = self._timers.get(wd)
            if current is not None and current[0] <= deadline:
                return  # already stopping, with an earlier or equal SIGKILL deadline
            with contextlib.suppress(OSError):  # first: a launcher about to spawn sees it
                previous = self._read_kill_at(wd)
                if previous is None or deadline < previous:
                    _write_atomic(os.path.join(wd, KILL_AT), repr(deadline).encode())
            if current is not None:
                current[1].cancel()
            else:
                self._signal_group(ident, signal.SIGTERM)
            timer = threading.Timer(grace, self._kill_if_running, (wd, ident))
            timer.daemon = True
            self._timers[wd] = (deadline, timer)
            timer.start()

    def _kill_if_running(self, wd: str, ident: _Ident) -> None:
        with self._lock:
            self._timers.pop(wd, None)
        if not os.path.exists(os.path.join(wd, _launcher.EXIT_CODE)):
            self._signal_group(ident, signal.SIGKILL)

    def _enforce_kill_at(self, wd: str, ident: _Ident) -> None:
        """A stop requested by an earlier engine process: its SIGKILL timer died with it."""
        if wd in self._timers:
            return
        deadline = self._read_kill_at(wd)
        if deadline is not None and time.time() >= deadline:
            self._signal_group(ident, signal.SIGKILL)

    @staticmethod
    def _read_kill_at(wd: str) -> float | None:
        try:
            with open(os.path.join(wd, KILL_AT), "rb") as f:
                return float(f.read())
        except (OSError, ValueError):
            return None

    # -- logs -----------------------------------------------------------------------------------

    def log_files(self, handle: TaskHandle) -> dict[str, str]:
        """Current log files; rotated copies are `<path>.1` ... (see `log_backups`)."""
        wd = os.path.abspath(handle.work_dir)
        return {name: os.path.join(wd, name) for name in _launcher.LOG_NAMES}

    def close(self) -> None:
        """Reap what has ended. Running tasks keep running; pending SIGKILL timers still fire while
        this process lives, and a later engine enforces their deadline (`kill_at`) in `poll`."""
        self._reap(None, force=True)

    # -- helpers --------------------------------------------------------------------------------

    def _finished(self, wd: str) -> TaskExit | None:
        recorded = _launcher.read_exit_code(wd)
        if recorded is None:
            return None
        code, diagnostics = recorded
        with self._lock:
            timer = self._timers.pop(wd, None)
        if timer is not None:
            timer[1].cancel()
        self._forget(wd)
        return TaskExit(code, log_tail=self._log_tail(wd), diagnostics=diagnostics)

    def _forget(self, wd: str) -> None:
        with self._lock:
            entry = self._launched.get(wd)
            if entry is not None and all(p.poll() is not None for p in entry.procs):
                del self._launched[wd]

    def _reap(self, wd: str | None, force: bool = False) -> None:
        """Collect exit statuses of our launchers (no zombies), all of them about once a second."""
        now = time.monotonic()
        with self._lock:
            entry = self._launched.get(wd) if wd else None
            if entry is not None:
                for p in entry.procs:
                    p.poll()
            if not force and now - self._last_reap < 1.0:
                return
            self._last_reap = now
            for key, entry in list(self._launched.items()):
                if all(p.poll() is not None for p in entry.procs) and key in self._claims:
                    del self._launched[key]  # claimed: their return codes are not needed any more

    def _read_claim(self, wd: str) -> dict | None:
        cached = self._claims.get(wd)
        if cached is not None:
            return cached
        path = os.path.join(wd, _launcher.CLAIM)
        claim: dict | None = None
        for _ in range(20):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return None
            try:
                claim = json.loads(data)
                break
            except ValueError:  # only on filesystems without hard links: being written right now
                time.sleep(0.005)
        if not isinstance(claim, dict):
            # Whoever created it crashed before writing it, so it ran nothing.
            claim = {"claimedBy": "unknown", "reason": "empty claim file"}
        with self._lock:
            self._claims[wd] = claim
        return claim

    def _handle_from_claim(self, wd: str, claim: dict) -> TaskHandle:
        if claim.get("claimedBy") == "launcher":
            return TaskHandle(wd, claim["pid"], claim.get("create_time"))
        return TaskHandle(wd)

    def _claim_engine(self, wd: str, reason: str) -> bool:
        os.makedirs(wd, exist_ok=True)
        body = json.dumps({"claimedBy": "engine", "reason": reason, "pid": os.getpid(), "time": time.time()})
        return _launcher.try_claim(wd, body)

    @staticmethod
    def _create_time(pid: int) -> float | None:
        try:
            return psutil.Process(pid).create_time()
        except psutil.Error:
            return None

    @staticmethod
    def _ident(claim: dict) -> _Ident:
        return claim["pid"], claim.get("create_time"), claim.get("start_ticks")

    @staticmethod
    def _probe(pid: int, create_time: float | None, start_ticks: int | None = None) -> str:
        """One of "alive", "zombie", "gone", "other" (the pid now belongs to another process).

        With the launcher's boot-relative start ticks (from its claim) the check is exact and
        immune to wall-clock steps; otherwise psutil's create_time within a tolerance."""
        if start_ticks is not None and start_ticks >= 0:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
                fields = stat[stat.rfind(b")") + 2 :].split()
                if int(fields[19]) != start_ticks:
                    return "other"
                return "zombie" if fields[0] in (b"Z", b"X") else "alive"
            except FileNotFoundError:
                return "gone"
            except (OSError, ValueError, IndexError):
                pass  # no usable /proc: psutil below
        try:
            proc = psutil.Process(pid)
            if create_time is not None and abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE_S:
                return "other"
            return "zombie" if proc.status() == psutil.STATUS_ZOMBIE else "alive"
        except psutil.NoSuchProcess:
            return "gone"
        except psutil.AccessDenied:
            return "alive"

    def _alive(self, pid: int, create_time: float | None, start_ticks: int | None = None) -> bool:
        """The process is running (not a zombie) and is the one we know (not a reused pid)."""
        return self._probe(pid, create_time, start_ticks) == "alive"

    def _signal_group(self, ident: _Ident, sig: int) -> bool:
        """Signal the process group led by our launcher (pid, create_time, start_ticks).

        Safe against pid reuse: a pid is never reallocated while its process group has members, so
        if the pid now belongs to another process, our group is gone and nothing is sent."""
        pid = ident[0]
        if pid is None or self._probe(*ident) == "other":
            return False
        try:
            os.killpg(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def _log_tail(self, wd: str) -> str:
        """The last `log_tail_bytes` of `all` (reaching into `all.1` after a rotation)."""
        want = self.log_tail_bytes
        chunks: list[bytes] = []
        cut = False
        for name in ("all", "all.1"):
            if want <= 0:
                break
            data, cut = self._read_end(os.path.join(wd, name), want)
            chunks.insert(0, data)
            want -= len(data)
            if cut:
                break
        data = b"".join(chunks)
        if cut and b"\n" in data:
            data = data[data.index(b"\n") + 1 :]  # drop the partial first line
        return data.decode("utf-8", "replace")

    @staticmethod
    def _read_end(path: str, n: int) -> tuple[bytes, bool]:
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size - n)
                f.seek(start)
                return f.read(n), start > 0
        except OSError:
            return b"", False

    def _file_tail(self, path: str, n: int) -> str:
        return self._read_end(path, n)[0].decode("utf-8", "replace")
