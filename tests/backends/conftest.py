"""Fixtures for the backend tests: task factories, a poll-until-exit helper, and a safety net that
kills every task process group a test left running."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from openxpu_server.backends.base import Backend, TaskExit, TaskHandle, TaskLaunch
from openxpu_server.backends.local import LocalBackend

REPO_ROOT = str(Path(__file__).resolve().parents[2])


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def wait_exit(backend: Backend, handle: TaskHandle, timeout: float = 10.0) -> TaskExit:
    return wait_for(lambda: backend.poll(handle), timeout)


def pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def make_task(tmp_path: Path) -> Callable[..., TaskLaunch]:
    counter = iter(range(1_000_000))

    def make(script: str, env: dict[str, str] | None = None, name: str | None = None) -> TaskLaunch:
        work_dir = tmp_path / (name or f"task{next(counter)}")
        return TaskLaunch("alice~job", "worker", 0, 0, 0, script, dict(env or {}), str(work_dir))

    return make


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    b = LocalBackend()
    yield b
    b.close()


@pytest.fixture(autouse=True)
def _kill_leftover_tasks(tmp_path: Path) -> Iterator[None]:
    yield
    for claim in tmp_path.rglob("claim"):
        try:
            data = json.loads(claim.read_text())
            proc = psutil.Process(data["pid"])
            if abs(proc.create_time() - data["create_time"]) <= 1.0:
                os.killpg(data["pid"], signal.SIGKILL)
        except (ValueError, KeyError, OSError, psutil.Error):
            continue
