"""The jupyter-server extension `openxpu`: configuration, REST handlers and the engine loops.

`jupyter lab` loads it (auto-enabled through jupyter-config/); `jupyter openxpu` runs it headless.
All settings are traitlets: `c.OpenXPU.db_url`, `c.OpenXPU.backend_class`, ...
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Instance, Int, List, Type, Unicode, Union, default

from . import __version__
from .backends.base import Backend
from .backends.local import LocalBackend
from .engine import Engine
from .errors import EngineLeaseError
from .scheduler.base import Scheduler
from .scheduler.hived import HivedScheduler
from .scheduler.layout import detect_single_box_layout, load_layout
from .scheduler.layout_model import Layout
from .services.jobs import env_username
from .store.db import default_db_url


class OpenXPU(ExtensionApp):
    name = "openxpu"
    description = "OpenXPU: OpenPAI-compatible distributed jobs, scheduler and controller inside Jupyter"
    version = __version__
    extension_url = "/openxpu/api/v2/info"
    load_other_extensions = True

    data_dir = Unicode(help="Where OpenXPU keeps its SQLite store and task work dirs.").tag(config=True)
    db_url = Unicode(help="SQLAlchemy URL of the store (default: SQLite in data_dir; postgresql://... works).").tag(
        config=True
    )
    backend_class = Type(default_value=LocalBackend, klass=Backend, help="Where tasks run.").tag(config=True)
    scheduler_class = Type(
        default_value=HivedScheduler,
        klass=Scheduler,
        help="How gangs are placed: HivedScheduler (cells, VCs, priorities, preemption) or FitScheduler "
        "(plain cpu/memory/GPU fitting on the layout's nodes).",
    ).tag(config=True)
    run_engine = Bool(True, help="Run the scheduler/controller loops in this server.").tag(config=True)
    poll_interval = Float(0.5, help="Seconds between controller passes when nothing wakes it.").tag(config=True)
    stop_grace_seconds = Float(10.0, help="SIGTERM-to-SIGKILL grace period when a task is stopped.").tag(config=True)
    max_platform_retries = Int(
        10, help="Cap on uncounted retries of transient failures (e.g. a task killed with SIGKILL by the OOM killer)."
    ).tag(config=True)
    username = Unicode(help="The OpenXPU user of a single-user server (default: the OS login name).").tag(config=True)
    cpus = Int(None, allow_none=True, help="CPUs the single box offers (default: detected).").tag(config=True)
    memory_mb = Int(None, allow_none=True, help="Memory in MB the single box offers (default: detected).").tag(
        config=True
    )
    gpus = Union(
        [Int(), List(Int())],
        default_value=None,
        allow_none=True,
        help="GPUs the single box offers: a count or device indices (default: detected with NVML/nvidia-smi).",
    ).tag(config=True)
    host_ip = Unicode("127.0.0.1", help="The address tasks use to reach each other.").tag(config=True)
    reservation_timeout = Float(
        600.0,
        allow_none=True,
        help="HiveD anti-starvation: a waiting gang passed over by gangs of its VC submitted this many seconds "
        "after it gets its cells reserved (no more backfill onto them). None: never (HiveD's own behaviour).",
    ).tag(config=True)
    borrow = Bool(
        True,
        help="HiveD: a guaranteed job that cannot start within its VC's quota may run on idle cells of other "
        "VCs, preemptible like an opportunistic job. False: HiveD's own behaviour (wait for the quota).",
    ).tag(config=True)
    layout_file = Unicode(
        help="HiveD-compatible cluster layout (YAML, see cluster/layouts/); default: this machine, detected, "
        "with one virtual cluster 'default'.",
    ).tag(config=True)
    log_rotate_bytes = Int(64 * 1024 * 1024, help="Size at which a task's log file is rotated.").tag(config=True)

    engine = Instance(Engine, allow_none=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.environ.get("OPENXPU_DATA_DIR") or str(Path(jupyter_data_dir()) / "openxpu")

    @default("db_url")
    def _default_db_url(self) -> str:
        return os.environ.get("OPENXPU_DB_URL") or default_db_url(self.data_dir)

    @default("layout_file")
    def _default_layout_file(self) -> str:
        return os.environ.get("OPENXPU_LAYOUT", "")

    @default("username")
    def _default_username(self) -> str:
        return env_username()

    @default("open_browser")
    def _default_open_browser(self) -> bool:
        return False

    def build_layout(self) -> Layout:
        if self.layout_file:
            return load_layout(self.layout_file)
        return detect_single_box_layout(cpus=self.cpus, memory_mb=self.memory_mb, gpus=self.gpus, host_ip=self.host_ip)

    def build_scheduler(self) -> Scheduler:
        layout = self.build_layout()
        if issubclass(self.scheduler_class, HivedScheduler):
            return self.scheduler_class(layout, reservation_timeout=self.reservation_timeout, borrow=self.borrow)
        return self.scheduler_class.from_layout(layout)

    def build_engine(self) -> Engine:
        if issubclass(self.backend_class, LocalBackend):
            # The runtime's error analysis reads up to the last 10 MB of a failed task's log (openpai.md §3.3).
            backend = self.backend_class(log_max_bytes=self.log_rotate_bytes, log_tail_bytes=10 * 1024 * 1024)
        else:
            backend = self.backend_class()
        return Engine(
            db_url=self.db_url,
            work_root=Path(self.data_dir) / "jobs",
            backend=backend,
            scheduler=self.build_scheduler(),
            poll_interval=self.poll_interval,
            grace_seconds=self.stop_grace_seconds,
            max_platform_retries=self.max_platform_retries,
        )

    def initialize_settings(self) -> None:
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        self.engine = self.build_engine()
        self.settings.update({"openxpu": self, "openxpu_jobs": self.engine.jobs})

    def initialize_handlers(self) -> None:
        from .api.routes import all_routes

        self.handlers.extend(all_routes())

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        if not self.run_engine or self.engine is None:
            return
        try:
            self.engine.start()
        except EngineLeaseError as e:
            self.log.warning("OpenXPU loops not started here: %s", e.message)
            return
        self.log.info("OpenXPU engine running (store %s, data %s)", self.db_url, self.data_dir)

    async def stop_extension(self) -> None:
        if self.engine is not None:
            self.engine.stop()

    def current_activity(self) -> bool:
        return False


main = launch_new_instance = OpenXPU.launch_instance

