"""Shared fixtures: a store on SQLite and (when OPENXPU_TEST_PG_URL is set, as in CI) PostgreSQL,
and a running engine with the real local backend and a declared 4-GPU single node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jobhelpers import make_nodes
from sqlalchemy import create_engine, text

from openxpu_server.backends.local import LocalBackend
from openxpu_server.engine import Engine
from openxpu_server.scheduler.fit import FitScheduler, Node

pytest_plugins = ("pytest_jupyter.jupyter_server",)

PG_URL = os.environ.get("OPENXPU_TEST_PG_URL")
DB_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _reset_postgres(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=DB_KINDS)
def db_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'openxpu.sqlite'}"
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("OPENXPU_TEST_PG_URL is not set in CI: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL (set OPENXPU_TEST_PG_URL; .ci/run does)")
    _reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def make_engine(db_url: str, tmp_path: Path):
    """Factory: an engine on `db_url` with its own work root; stopped at teardown."""
    engines: list[Engine] = []

    def factory(nodes: list[Node] | None = None, scheduler=None, **kwargs) -> Engine:
        engine = Engine(
            db_url=db_url,
            work_root=tmp_path / "jobs",
            backend=LocalBackend(),
            scheduler=scheduler or FitScheduler(nodes or make_nodes()),
            poll_interval=kwargs.pop("poll_interval", 0.05),
            grace_seconds=kwargs.pop("grace_seconds", 2.0),
            **kwargs,
        )
        engine.start()
        engines.append(engine)
        return engine

    yield factory
    for e in engines:
        if e.running:
            e.stop()


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine()
