"""The store on SQLite and PostgreSQL: migrations, constraints, the engine lease."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from openxpu_server.errors import EngineLeaseError
from openxpu_server.store import Job, Store, now_ms
from openxpu_server.store.db import alembic_config, lease_owner_id


def make_job(name: str, user: str = "alice") -> Job:
    return Job(username=user, name=name, config_text="x", spec={}, state="AttemptCreationPending",
               submission_time=now_ms())


def test_migrations_create_every_table_and_downgrade_cleanly(db_url):
    from alembic import command

    store = Store(db_url)
    tables = set(inspect(store.engine).get_table_names())
    assert {"jobs", "job_attempts", "tasks", "task_attempts", "events", "job_tags", "engine_lease",
            "alembic_version"} <= tables
    cfg = alembic_config(store.engine)
    command.downgrade(cfg, "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "heads")
    assert "jobs" in inspect(store.engine).get_table_names()
    store.dispose()


def test_opening_twice_is_idempotent_and_keeps_data(db_url):
    store = Store(db_url)
    with store.session() as s:
        s.add(make_job("keep"))
    store.dispose()
    again = Store(db_url)
    with again.session() as s:
        assert s.scalar(select(Job.name)) == "keep"
    again.dispose()


def test_job_name_unique_per_user(db_url):
    store = Store(db_url)
    with store.session() as s:
        s.add(make_job("same"))
        s.add(make_job("same", user="bob"))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(make_job("same"))
    store.dispose()


def test_lease_is_exclusive_and_freed_by_release_or_dead_owner(db_url):
    store = Store(db_url)
    me = lease_owner_id()
    store.acquire_lease(me)
    store.acquire_lease(me)  # re-entrant for the holder
    import socket

    live_other = f"{socket.gethostname().upper()}-elsewhere:1:0"  # another host: presumed alive
    with pytest.raises(EngineLeaseError) as e:
        store.acquire_lease(live_other)
    assert "another OpenXPU engine" in e.value.message
    store.release_lease(me)
    store.acquire_lease(live_other)
    # A holder on this host whose process is gone frees the lease at once.
    store.release_lease(live_other)
    dead = f"{socket.gethostname()}:999999:0"
    store.acquire_lease(dead)
    store.acquire_lease(me)
    assert store.renew_lease(me) and not store.renew_lease(dead)
    store.dispose()
