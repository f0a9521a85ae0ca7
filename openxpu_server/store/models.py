"""SQLAlchemy 2 models: the store holds each job's spec and recorded status (ARCHITECTURE invariant 1).

States are FrameworkController states (`controller/states.py`); times are epoch milliseconds
like OpenPAI's API. A job has attempts; an attempt has one task row per (role, index); a task
has task attempts (retries when gang allocation is off). Everything the controller needs to pick
up after a crash is a column here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("username", "name", name="uq_jobs_username_name"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_submission_time", "submission_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    virtual_cluster: Mapped[str] = mapped_column(String(255), default="default")
    priority_class: Mapped[str] = mapped_column(String(16), default="test")
    priority: Mapped[int] = mapped_column(Integer, default=10)
    config_text: Mapped[str] = mapped_column(Text)  # what the user sent (secrets intact; never returned)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # normalized protocol (defaults applied, rendered)
    execution_type: Mapped[str] = mapped_column(String(8), default="START")  # START | STOP
    state: Mapped[str] = mapped_column(String(32))  # FC framework state
    submission_time: Mapped[int] = mapped_column(BigInteger)
    launched_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempt_id: Mapped[int] = mapped_column(Integer, default=0)  # current attempt (= total retries)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    accountable_retries: Mapped[int] = mapped_column(Integer, default=0)
    total_gpus: Mapped[int] = mapped_column(Integer, default=0)
    total_tasks: Mapped[int] = mapped_column(Integer, default=0)
    total_task_roles: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Bumped on every change: lets followers (CLI, UI) and the controller notice work cheaply.
    version: Mapped[int] = mapped_column(Integer, default=0)

    attempts: Mapped[list[JobAttempt]] = relationship(
        back_populates="job", order_by="JobAttempt.attempt_id", cascade="all, delete-orphan"
    )
    tags: Mapped[list[JobTag]] = relationship(back_populates="job", cascade="all, delete-orphan")

    @property
    def key(self) -> str:
        return f"{self.username}~{self.name}"


class JobTag(Base):
    __tablename__ = "job_tags"
    __table_args__ = (UniqueConstraint("job_id", "tag", name="uq_job_tags_job_tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(255), index=True)
    job: Mapped[Job] = relationship(back_populates="tags")


class JobAttempt(Base):
    __tablename__ = "job_attempts"
    __table_args__ = (UniqueConstraint("job_id", "attempt_id", name="uq_job_attempts_job_attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    created_time: Mapped[int] = mapped_column(BigInteger)
    launched_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Where the scheduler put the gang: {"role/index": {node, hostIp, gpus}}; null while waiting.
    placement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    wait_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    exit_diagnostics: Mapped[str | None] = mapped_column(Text, nullable=True)
    exit_messages: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    trigger_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger_role: Mapped[str | None] = mapped_column(String(255), nullable=True)
    trigger_index: Mapped[int | None] = mapped_column(Integer, nullable=True)

    job: Mapped[Job] = relationship(back_populates="attempts")
    tasks: Mapped[list[Task]] = relationship(
        back_populates="job_attempt", order_by="(Task.role, Task.index)", cascade="all, delete-orphan"
    )


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("job_attempt_id", "role", "index", name="uq_tasks_attempt_role_index"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_attempt_id: Mapped[int] = mapped_column(ForeignKey("job_attempts.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(255))
    index: Mapped[int] = mapped_column(Integer)
    uid: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    attempt_id: Mapped[int] = mapped_column(Integer, default=0)  # current task attempt
    retries: Mapped[int] = mapped_column(Integer, default=0)
    accountable_retries: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    host_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ports: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # label -> [port, ...]
    gpus: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_time: Mapped[int] = mapped_column(BigInteger)
    launched_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)

    job_attempt: Mapped[JobAttempt] = relationship(back_populates="tasks")
    attempts: Mapped[list[TaskAttempt]] = relationship(
        back_populates="task", order_by="TaskAttempt.attempt_id", cascade="all, delete-orphan"
    )


class TaskAttempt(Base):
    __tablename__ = "task_attempts"
    __table_args__ = (UniqueConstraint("task_id", "attempt_id", name="uq_task_attempts_task_attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    work_dir: Mapped[str] = mapped_column(Text)
    node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_create_time: Mapped[float | None] = mapped_column(nullable=True)
    created_time: Mapped[int] = mapped_column(BigInteger)
    launched_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # spec code after analysis
    origin_exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # what the process returned
    exit_diagnostics: Mapped[str | None] = mapped_column(Text, nullable=True)
    exit_messages: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    task: Mapped[Task] = relationship(back_populates="attempts")


class Event(Base):
    """A Kubernetes-style event for the job's events API and followers' progress lines."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16), default="Normal")  # Normal | Warning
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    job_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    role: Mapped[str | None] = mapped_column(String(255), nullable=True)
    task_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class EngineLease(Base):
    """One row per store: the engine that runs the loops, renewed by heartbeats."""

    __tablename__ = "engine_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    heartbeat: Mapped[int] = mapped_column(BigInteger)
