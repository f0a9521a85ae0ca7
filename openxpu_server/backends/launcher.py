"""The local backend's per-task launcher: claim the work dir, run the script, tee its logs, record its exit.

`LocalBackend.launch` starts one launcher per task attempt, in its own session and process group
(so an engine crash leaves the task running), with cwd = the work dir:

    python -I -S -c "<bootstrap: import this module, call main>" WORK_DIR
    python -m openxpu_server.backends.launcher WORK_DIR        (equivalent, by hand)

Files in WORK_DIR (the protocol shared with `local.py`):

    claim        created once and atomically (link of a complete temp file). The launcher writes
                 {"claimedBy": "launcher", "pid", "create_time", "start_ticks"}; `create_time` is
                 computed the way psutil's `Process.create_time()` does on Linux. If `claim` exists
                 already (another launcher won, or the engine claimed the dir in recover/stop) the
                 launcher exits at once and runs nothing: at most one instance of an attempt ever runs.
    launch.cfg   the task record (marshal; the same dict as task.json, which is only read as a
                 fallback because `import json` costs ~7 ms of start latency): env overrides and the
                 `launcher` options {log_max_bytes, log_backups, kill_leftovers}.
    script.sh    run as `bash -e script.sh` (errexit, like OpenPAI's runtime) in the same process group,
                 env = the launcher's environ + task env + PAI_WORK_DIR.
    stdout, stderr, all
                 the tee of the script's output ("all" interleaved by line), rotated by size to
                 `<name>.1` ... `<name>.<log_backups>`.
    exit_code    written atomically (temp + rename) when the script ends: first line the exit code
                 (128+N when killed by signal N), then optional diagnostics lines.

The launcher catches SIGTERM/SIGINT (handlers are reset to the default in the script on exec) so a
signal to the group ends the script and the launcher survives to record 128+N; SIGKILL of the group
kills it too, and then no exit_code exists (the engine reports 137). When the script ends, members
of the process group it left behind are SIGKILLed, as a container runtime would.

Stdlib only, and as few modules as possible: the launcher's start-up time is task launch latency.
"""

import os
import sys
import time

try:  # the C module: `signal` itself imports enum (~1-2 ms of start-up)
    import _signal as signal
except ImportError:  # pragma: no cover - other interpreters
    import signal

CLAIM = "claim"
CONFIG = "launch.cfg"
TASK_JSON = "task.json"
SCRIPT = "script.sh"
EXIT_CODE = "exit_code"
KILL_AT = "kill_at"  # written by the engine's stop() before it signals the group: SIGKILL deadline
LOG_NAMES = ("stdout", "stderr", "all")

DEFAULT_LOG_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 1
LAUNCHER_ERROR_EXIT_CODE = 256  # PAIRuntimeExitAbnormally: the launcher itself failed
CLAIM_LOST_EXIT_STATUS = 3  # the launcher's own exit status when it did not run the task

PARTIAL_LINE_FLUSH_S = 0.1  # an unterminated line reaches "all" at most this late
DRAIN_AFTER_EXIT_S = 2.0  # after the script ended, wait at most this long for the log pipes' EOF

_stop_signal = 0


def _on_signal(signum, frame):
    # The signal went to the whole process group, so the script has it too: just remember it.
    global _stop_signal
    if not _stop_signal:
        _stop_signal = signum


def _note(msg):
    try:  # noqa: SIM105 - contextlib costs start-up time
        os.write(2, f"[openxpu-launcher {time.strftime('%Y-%m-%dT%H:%M:%S')}] {msg}\n".encode())
    except OSError:
        pass


def process_start():
    """(create_time as psutil computes it on Linux, boot-relative start ticks) of this process."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rfind(b")") + 2 :].split()[19])
        with open("/proc/stat", "rb") as f:
            btime = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        return ticks / os.sysconf("SC_CLK_TCK") + btime, ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time(), -1


def try_claim(work_dir, body):
    """Create WORK_DIR/claim holding `body` unless it exists; True when this call created it.

    The content is complete before the name appears (link of a written temp file), so a reader
    never sees a half-written claim. Shared with the engine side (local.py)."""
    path = os.path.join(work_dir, CLAIM)
    data = body.encode()
    tmp = f"{path}.tmp.{os.getpid()}.{time.monotonic_ns()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: exclusive create, content right after
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return True
    finally:
        try:  # noqa: SIM105 - contextlib costs start-up time
            os.unlink(tmp)
        except OSError:
            pass


def read_exit_code(work_dir):
    """(code, diagnostics) from WORK_DIR/exit_code, None while it is not written; an unreadable code
    counts as a launcher failure."""
    try:
        with open(os.path.join(work_dir, EXIT_CODE), "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    first, _, rest = text.partition("\n")
    try:
        return int(first.strip()), rest.strip()
    except ValueError:
        return LAUNCHER_ERROR_EXIT_CODE, f"unreadable exit_code file: {text[:200]!r}"


def write_exit_code(work_dir, code, diagnostics=""):
    """Atomically write WORK_DIR/exit_code: the code, then diagnostics lines."""
    path = os.path.join(work_dir, EXIT_CODE)
    tmp = f"{path}.tmp.{os.getpid()}"
    text = f"{code}\n" + (diagnostics + "\n" if diagnostics else "")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load_config(work_dir):
    try:
        import marshal

        with open(os.path.join(work_dir, CONFIG), "rb") as f:
            return marshal.load(f)
    except FileNotFoundError:
        import json

        with open(os.path.join(work_dir, TASK_JSON)) as f:
            return json.load(f)


class _Log:
    """An append-only log file rotated by size: `path` -> `path.1` -> ... -> `path.<backups>`."""

    def __init__(self, path, max_bytes, backups):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._open()

    def _open(self):
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            self.fd = os.open(os.devnull, os.O_WRONLY)
        self.size = os.fstat(self.fd).st_size

    def _raw(self, data):
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:  # a full disk must not stop the tee: the script would block on a full pipe
            pass
        self.size += len(data)

    def _rotate(self):
        os.close(self.fd)
        try:
            if self.backups > 0:
                for i in range(self.backups - 1, 0, -1):
                    if os.path.exists(f"{self.path}.{i}"):
                        os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
                os.replace(self.path, self.path + ".1")
            else:
                os.unlink(self.path)
        except OSError:
            pass
        self._open()
        return self.size == 0

    def write(self, data):
        limit = self.max_bytes
        while data:
            room = limit - self.size
            if limit <= 0 or len(data) <= room:
                self._raw(data)
                return
            # Cut at the last line end that fits, so files start with whole lines where possible.
            cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
            if cut == 0 and self.size == 0:
                cut = limit  # a single line longer than a whole file
            if cut:
                self._raw(data[:cut])
                data = data[cut:]
            if not self._rotate():  # could not rotate: keep the data rather than loop
                self._raw(data)
                return

    def close(self):
        try:  # noqa: SIM105 - contextlib costs start-up time
            os.close(self.fd)
        except OSError:
            pass


class _StoppedBeforeStart(Exception):
    pass


def _stopped_before_start():
    sig = _stop_signal or signal.SIGTERM
    return 128 + sig, f"stopped ({_signal_name(sig)}) before the task started"


def _exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _signal_name(signum):
    for name in ("SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
                 "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGXCPU", "SIGXFSZ"):
        if getattr(signal, name, None) == signum:
            return name
    return f"signal {signum}"


def kill_group_members(pgid, spare):
    """SIGKILL every live process of process group `pgid` except pid `spare` (Linux /proc scan)."""
    killed = 0
    for _ in range(50):
        found = False
        try:
            names = os.listdir("/proc")
        except OSError:
            return killed
        for name in names:
            if not name.isdigit() or int(name) == spare:
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                fields = stat[stat.rfind(b")") + 2 :].split()
                if int(fields[2]) != pgid or fields[0] in (b"Z", b"X"):
                    continue
                os.kill(int(name), signal.SIGKILL)
                found = True
                killed += 1
            except (OSError, ValueError, IndexError):
                continue
        if not found:
            break
        time.sleep(0.005)
    return killed


def _spawn(work_dir, env, out_w, err_w):
    sigdef = [getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGPIPE", "SIGXFSZ")
              if hasattr(signal, n)]  # Python ignores SIGPIPE/SIGXFSZ; ignored dispositions survive exec
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    argv = ["bash", "-e", SCRIPT]
    try:
        return os.posix_spawnp("bash", argv, env, file_actions=actions, setsigmask=(), setsigdef=sigdef)
    except FileNotFoundError:
        return os.posix_spawn("/bin/bash", argv, env, file_actions=actions, setsigmask=(), setsigdef=sigdef)


def _run(work_dir, cfg):
    """Run the script to its end, tee its output; return (exit code, diagnostics)."""
    import select

    opts = cfg.get("launcher") or {}
    max_bytes = int(opts.get("log_max_bytes", DEFAULT_LOG_MAX_BYTES))
    backups = int(opts.get("log_backups", DEFAULT_LOG_BACKUPS))
    env = dict(os.environ)
    env.update(cfg.get("env") or {})
    env["PAI_WORK_DIR"] = work_dir
    logs = {name: _Log(os.path.join(work_dir, name), max_bytes, backups) for name in LOG_NAMES}
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        # Last look for a stop request before the script joins the process group: a signal sent
        # to the group before the spawn would miss it. The engine writes kill_at before signalling,
        # so only a stop arriving in the microseconds up to the fork is left to its SIGKILL.
        if _stop_signal or os.path.exists(os.path.join(work_dir, KILL_AT)):
            raise _StoppedBeforeStart
        pid = _spawn(work_dir, env, out_w, err_w)
    except (OSError, _StoppedBeforeStart) as e:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        for log in logs.values():
            log.close()
        if isinstance(e, _StoppedBeforeStart):
            return _stopped_before_start()
        code = 127 if isinstance(e, FileNotFoundError) else 126
        return code, f"cannot start bash: {e}"
    os.close(out_w)
    os.close(err_w)
    _note(f"task started: pid {pid}")
    diagnostics = []
    status = None
    try:
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        poller = select.poll()
        streams = {out_r: logs["stdout"], err_r: logs["stderr"]}
        for fd in streams:
            poller.register(fd, select.POLLIN)
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        all_log = logs["all"]
        partial = {}  # fd -> [unterminated tail, monotonic time it started waiting]
        deadline = None
        while streams or status is None:
            now = time.monotonic()
            timeout = None
            if partial:
                timeout = max(0.0, min(p[1] for p in partial.values()) + PARTIAL_LINE_FLUSH_S - now)
            if status is None and pidfd < 0:
                timeout = 0.05 if timeout is None else min(timeout, 0.05)
            if deadline is not None:
                timeout = max(0.0, deadline - now) if timeout is None else min(timeout, max(0.0, deadline - now))
            events = poller.poll(None if timeout is None else int(timeout * 1000) + 1)
            now = time.monotonic()
            for fd, _ev in events:
                if fd == pidfd:
                    poller.unregister(pidfd)
                    os.close(pidfd)
                    pidfd = -2
                    status = os.waitpid(pid, 0)[1]
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    poller.unregister(fd)
                    os.close(fd)
                    del streams[fd]
                    tail = partial.pop(fd, None)
                    if tail:
                        all_log.write(tail[0])
                    continue
                streams[fd].write(data)
                tail = partial.pop(fd, None)
                if tail:
                    data = tail[0] + data
                nl = data.rfind(b"\n") + 1
                if nl:
                    all_log.write(data[:nl])
                    tail = None
                rest = data[nl:]
                if len(rest) >= 65536:
                    all_log.write(rest)
                elif rest:
                    partial[fd] = [rest, tail[1] if tail else now]
            if status is None and pidfd == -1:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
            if status is not None and deadline is None:
                if opts.get("kill_leftovers", True):
                    n = kill_group_members(os.getpgid(0), os.getpid())
                    if n:
                        _note(f"killed {n} leftover process(es) of the task's process group")
                deadline = time.monotonic() + DRAIN_AFTER_EXIT_S
            if deadline is not None and time.monotonic() >= deadline:
                if streams:
                    diagnostics.append(f"log pipes still open {DRAIN_AFTER_EXIT_S:.0f}s after the task ended "
                                       "(a process left its process group?); logs may be incomplete")
                break
            for fd in [fd for fd, p in partial.items() if now - p[1] >= PARTIAL_LINE_FLUSH_S]:
                all_log.write(partial.pop(fd)[0])
        for tail in partial.values():
            all_log.write(tail[0])
    except BaseException:
        if status is None:  # never leave the script running unsupervised
            kill_group_members(os.getpgid(0), os.getpid())
            status = os.waitpid(pid, 0)[1]
        raise
    finally:
        for log in logs.values():
            log.close()
    code = _exit_code(status)
    if code > 128 and os.WIFSIGNALED(status):
        diagnostics.insert(0, f"the task was killed by {_signal_name(code - 128)}")
    if _stop_signal:
        diagnostics.append(f"the launcher received {_signal_name(_stop_signal)} (stop requested)")
    return code, "\n".join(diagnostics)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: launcher WORK_DIR\n")
        return 2
    work_dir = os.path.abspath(argv[0])
    os.chdir(work_dir)
    pid = os.getpid()
    if os.getpgid(0) != pid:  # started by hand: lead a group of our own, as LocalBackend starts us
        try:
            os.setsid()
        except OSError:
            os.setpgid(0, 0)
    for name in ("SIGTERM", "SIGINT"):
        signal.signal(getattr(signal, name), _on_signal)
    create_time, ticks = process_start()
    body = f'{{"claimedBy": "launcher", "pid": {pid}, "create_time": {create_time!r}, "start_ticks": {ticks}}}\n'
    if not try_claim(work_dir, body):
        _note(f"{os.path.join(work_dir, CLAIM)} already claimed: not running the task")
        return CLAIM_LOST_EXIT_STATUS
    try:
        if _stop_signal:
            code, diagnostics = _stopped_before_start()
        else:
            code, diagnostics = _run(work_dir, _load_config(work_dir))
    except BaseException as e:  # record *something*: the engine must not wait forever
        import traceback

        traceback.print_exc()
        code, diagnostics = LAUNCHER_ERROR_EXIT_CODE, f"launcher error: {e!r}"
    write_exit_code(work_dir, code, diagnostics)
    _note(f"task ended: exit code {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
