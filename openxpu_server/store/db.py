"""Opening a store: engine, migrations (Alembic), sessions and the engine lease."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..errors import EngineLeaseError
from .models import EngineLease

MIGRATIONS = Path(__file__).with_name("migrations")


def now_ms() -> int:
    return int(time.time() * 1000)


def default_db_url(data_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(data_dir) / 'openxpu.sqlite'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (API) never block the controller's writes
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Upgrade to every head: independent features add migration branches from the same parent."""
    command.upgrade(alembic_config(engine), revision)


class Store:
    """A migrated database and a session factory; the only way the engine reaches SQL."""

    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._sessions() as s, s.begin():
            yield s

    def new_session(self) -> Session:
        """A session whose caller commits explicitly (the controller commits before it acts)."""
        return self._sessions()

    def dispose(self) -> None:
        self.engine.dispose()

    # --- the engine lease: one engine, and only one, runs the loops for a store ---

    def acquire_lease(self, owner: str, ttl_ms: int = 15000) -> None:
        """Take the lease if it is free, ours, or its holder stopped heart-beating."""
        with self.session() as s:
            lease = s.execute(select(EngineLease).where(EngineLease.id == 1).with_for_update()).scalar()
            t = now_ms()
            if lease is None:
                s.add(EngineLease(id=1, owner=owner, heartbeat=t))
            elif lease.owner == owner or t - lease.heartbeat > ttl_ms or not _owner_alive(lease.owner):
                lease.owner, lease.heartbeat = owner, t
            else:
                raise EngineLeaseError(
                    f"another OpenXPU engine ({lease.owner}) runs the loops for {self.url}; "
                    "talk to it through its server (--server URL) or stop it first"
                )

    def renew_lease(self, owner: str) -> bool:
        with self.session() as s:
            lease = s.get(EngineLease, 1)
            if lease is None or lease.owner != owner:
                return False
            lease.heartbeat = now_ms()
            return True

    def release_lease(self, owner: str) -> None:
        with self.session() as s:
            lease = s.get(EngineLease, 1)
            if lease is not None and lease.owner == owner:
                s.delete(lease)


def _owner_alive(owner: str) -> bool:
    """Owners are 'host:pid:start'; on this host a dead pid frees the lease at once."""
    import socket

    import psutil

    try:
        host, pid, start = owner.rsplit(":", 2)
        if host != socket.gethostname():
            return True
        proc = psutil.Process(int(pid))
        return abs(proc.create_time() - float(start)) < 1.0
    except (ValueError, psutil.Error):
        return False


def lease_owner_id() -> str:
    import socket

    import psutil

    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time()}"
