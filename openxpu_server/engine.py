"""The engine: store + scheduler + backend + controller, driven by one loop thread.

Both faces that run loops build it the same way: the jupyter-server extension (`OpenXPU` app) and
the CLI's embedded mode. The loop runs in its own thread because every step of a tick is blocking
I/O (SQL, process table); a submit wakes it at once so a job does not wait for the next poll.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import psutil

from .backends.base import Backend
from .controller.controller import Controller
from .runtime.gpus import resolve_gpus
from .runtime.ports import PortAllocator
from .scheduler.base import Scheduler
from .scheduler.fit import FitScheduler, Node
from .services.jobs import JobService
from .store.db import Store, lease_owner_id

log = logging.getLogger("openxpu.engine")


def single_box_nodes(
    *, cpus: int | None = None, memory_mb: int | None = None, gpus: int | list[int] | None = None, host_ip: str = "127.0.0.1"
) -> list[Node]:
    """The one node of the embedded default: this machine's CPUs, memory and GPUs."""
    return [
        Node(
            name=socket.gethostname(),
            host_ip=host_ip,
            cpu=cpus if cpus is not None else (os.cpu_count() or 1),
            memory_mb=memory_mb if memory_mb is not None else psutil.virtual_memory().total // (1024 * 1024),
            gpus=resolve_gpus(gpus),
        )
    ]


class Engine:
    def __init__(
        self,
        *,
        db_url: str,
        work_root: str | Path,
        backend: Backend,
        scheduler: Scheduler | None = None,
        poll_interval: float = 0.5,
        grace_seconds: float = 10.0,
        ports: PortAllocator | None = None,
        max_platform_retries: int = 10,
    ):
        self.store = Store(db_url)
        self.backend = backend
        self.scheduler = scheduler or FitScheduler(single_box_nodes())
        self.poll_interval = poll_interval
        self.owner = lease_owner_id()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self.controller = Controller(
            self.store,
            self.scheduler,
            backend,
            work_root=work_root,
            ports=ports,
            grace_seconds=grace_seconds,
            max_platform_retries=max_platform_retries,
            on_change=self._notify,
        )
        self.jobs = JobService(self.store, scheduler=self.scheduler, backend=backend, wake=self.wake)

    # ---------------------------------------------------------------- loop control
    def wake(self) -> None:
        self._wake.set()

    def _notify(self, key: str) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for_change(self, timeout: float) -> None:
        """Block until the controller changes some job (or the timeout); for followers."""
        with self._changed:
            self._changed.wait(timeout)

    def start(self) -> None:
        """Take the store's lease and start the loop thread."""
        self.store.acquire_lease(self.owner)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="openxpu-engine", daemon=True)
        self._thread.start()
        log.info("OpenXPU engine started on %s", self.store.url)

    def _run(self) -> None:
        last_renew = time.monotonic()
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.controller.tick()
            except Exception:  # the loop must survive a bad tick; the next one retries
                log.exception("engine tick failed")
            if time.monotonic() - last_renew > 5:
                if not self.store.renew_lease(self.owner):
                    log.error("engine lease lost to another engine; stopping the loops")
                    return
                last_renew = time.monotonic()
            self._wake.wait(self.poll_interval)

    def stop(self, timeout: float = 30) -> None:
        """Stop the loops; running tasks go on and are re-adopted by the next engine."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.backend.close()
        self.store.release_lease(self.owner)
        self.store.dispose()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
