"""The jupyter-server extension `openxpu`: configuration, REST handlers and the engine loops.

`jupyter lab` loads it (auto-enabled through jupyter-config/); `jupyter openxpu` runs it headless.
All settings are traitlets: `c.OpenXPU.db_url`, `c.OpenXPU.backend_class`, ...
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Enum, Float, Instance, Int, List, Type, Unicode, Union, default

from . import __version__
from .backends.base import Backend
from .backends.local import LocalBackend
from .engine import Engine
from .errors import EngineLeaseError
from .scheduler.base import Scheduler
from .scheduler.hived import HivedScheduler
from .scheduler.layout import detect_single_box_layout, load_layout
from .scheduler.layout_model import Layout
from .scheduler.vc_admin import ManagedScheduler
from .services.accounts import AccountService
from .services.jobs import env_username
from .services.marketplace import MarketplaceService, default_templates_dir
from .services.storage import StorageService
from .services.vcs import VcService, apply_settings, stored_limits
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
    # -- accounts, authorization, limits (docs/admin-guide.md) --
    job_visibility = Enum(
        ["all", "group", "own"],
        default_value="own",
        help="Whose jobs a user sees: all (OpenPAI's behaviour), group (users sharing a group other than "
        "'default'), own (the classroom default). Admins see every job; only owners and admins stop or tag.",
    ).tag(config=True)
    password_login = Bool(
        True, help="POST authn/basic/login (passwords of users created by an admin); False e.g. under JupyterHub."
    ).tag(config=True)
    lab_user_is_admin = Bool(True, help="The single-user lab's user (c.OpenXPU.username) is in admingroup.").tag(
        config=True
    )
    token_ttl_seconds = Int(7 * 24 * 3600, help="Lifetime of bearer tokens from login / POST tokens.").tag(
        config=True
    )
    rate_limit_per_minute = Int(
        0, help="API requests per minute per user (token bucket); 0: no limit (a single box)."
    ).tag(config=True)
    max_request_bytes = Int(1024 * 1024, help="Largest request body (job submissions included): 413 beyond.").tag(
        config=True
    )
    max_upload_bytes = Int(64 * 1024 * 1024, help="Largest storage file upload.").tag(config=True)
    storage_root = Unicode(help="Where storages created without a path live (default: <data_dir>/storages).").tag(
        config=True
    )
    marketplace_dir = Unicode(
        None,
        allow_none=True,
        help="Built-in marketplace templates, loaded into the store at the first start that sees each one "
        "(default: $OPENXPU_MARKETPLACE_DIR, else the shipped examples/marketplace; '' for none).",
    ).tag(config=True)
    storage_mount = Enum(
        ["auto", "bind", "link"],
        default_value="auto",
        help="How storages appear in tasks: bind (private mount namespace, read-only enforced), link (symlinks; "
        "read-only storages refused), auto (bind when this host allows it).",
    ).tag(config=True)

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

    def build_hived(self, layout: Layout) -> HivedScheduler:
        return self.scheduler_class(layout, reservation_timeout=self.reservation_timeout, borrow=self.borrow)

    def build_scheduler(self) -> Scheduler:
        layout = self.build_layout()
        if issubclass(self.scheduler_class, HivedScheduler):
            # Wrapped: VCs changed at runtime and per-user limits (scheduler/vc_admin.py).
            return ManagedScheduler(self.build_hived(layout))
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
        from .api.base import RateLimiter

        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        self.engine = self.build_engine()
        store, scheduler = self.engine.store, self.engine.scheduler
        accounts = AccountService(store, token_ttl_s=self.token_ttl_seconds)
        rebuild = None
        if isinstance(scheduler, ManagedScheduler):
            # VCs an admin created, resized or deleted at runtime, over the layout file's.
            scheduler.swap(self.build_hived(apply_settings(scheduler.layout, store)))
            for vc, limits in stored_limits(store).items():
                scheduler.set_limits(vc, limits)
            rebuild = self.build_hived
        layout = getattr(scheduler, "layout", None)
        vc_names = set(layout.virtual_clusters) if layout is not None else {"default"}
        # The `default` group (every user) starts with VC `default`, `admingroup` with admin rights.
        accounts.bootstrap(
            default_vcs=["default"] if "default" in vc_names else [],
            lab_user=self.username,
            lab_user_is_admin=self.lab_user_is_admin,
        )
        storages = StorageService(
            store, accounts, root=self.storage_root or Path(self.data_dir) / "storages", mount_mode=self.storage_mount
        )
        jobs = self.engine.jobs
        jobs.accounts, jobs.storages, jobs.visibility = accounts, storages, self.job_visibility
        templates = default_templates_dir() if self.marketplace_dir is None else self.marketplace_dir or None
        marketplace = MarketplaceService(store, Path(templates) if templates else None)
        seeded = marketplace.seed_builtins()
        if seeded:
            self.log.info("OpenXPU marketplace: loaded %d built-in templates (%s)", len(seeded), ", ".join(seeded))
        self.settings.update(
            {
                "openxpu": self,
                "openxpu_jobs": jobs,
                "openxpu_accounts": accounts,
                "openxpu_storages": storages,
                "openxpu_vcs": VcService(store, scheduler, accounts, rebuild=rebuild),
                "openxpu_rate_limiter": RateLimiter(self.rate_limit_per_minute),
                "openxpu_marketplace": marketplace,
            }
        )

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

