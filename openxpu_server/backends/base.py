"""The backend port: where tasks really run (local processes, pods, simulated time).

The controller records each task attempt in the store *before* calling `launch`, and a backend
must make `launch` safe to call again for the same `TaskLaunch.work_dir`: at most one instance of a
task attempt ever runs (FrameworkController's consistency guarantee).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class TaskLaunch:
    """Everything needed to start one task attempt."""

    key: str  # "<user>~<job>"
    role: str
    index: int
    job_attempt: int
    task_attempt: int
    script: str  # bash script: the role's commands joined with newlines (run with errexit)
    env: dict[str, str]  # the PAI_* contract, CUDA_VISIBLE_DEVICES, ... (merged over the host env)
    work_dir: str  # unique per task attempt; logs and bookkeeping files live here
    gpus: list[int] = field(default_factory=list)

    def record(self) -> dict:
        """The identity of this task attempt as a backend writes it into its work dir."""
        return {
            "key": self.key,
            "role": self.role,
            "index": self.index,
            "job_attempt": self.job_attempt,
            "task_attempt": self.task_attempt,
            "gpus": list(self.gpus),
        }


@dataclass
class TaskHandle:
    """What the store must keep to find a task attempt again after a restart."""

    work_dir: str
    pid: int | None = None
    pid_create_time: float | None = None  # psutil create_time, guards against pid reuse
    node: str = "localhost"


@dataclass
class TaskExit:
    """A finished task attempt as the backend saw it."""

    exit_code: int  # 128+N for a signal N, like a shell / kubelet
    log_tail: str = ""  # the end of the user's combined log, for the runtime's error analysis
    diagnostics: str = ""


class Backend(ABC):
    @abstractmethod
    def launch(self, task: TaskLaunch) -> TaskHandle:
        """Start the task attempt (idempotent for the same work_dir; see module docstring)."""

    @abstractmethod
    def poll(self, handle: TaskHandle) -> TaskExit | None:
        """None while the task runs; its exit once it has finished. Works on re-adopted tasks."""

    @abstractmethod
    def recover(self, handle: TaskHandle) -> TaskHandle | None:
        """After a restart, for an attempt recorded as launching: the live/finished task's handle,
        or None when it provably never started (and now never will)."""

    @abstractmethod
    def stop(self, handle: TaskHandle, grace_seconds: float) -> None:
        """Ask the task to end (SIGTERM) and make sure it does (SIGKILL after the grace period).
        Must not block for the grace period: later `poll` calls see the exit."""

    def log_files(self, handle: TaskHandle) -> dict[str, str]:
        """Log name (stdout, stderr, all) -> path, for the logs API."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources on engine stop (running tasks keep running)."""
