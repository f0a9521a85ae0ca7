"""The narrow interface between the controller and any scheduler.

The controller hands the scheduler the queue of waiting gangs; the scheduler places whole gangs
(or nothing), remembers what it placed until `release`, and can say why a gang still waits.
Implementations are pure Python with no I/O so they can be benchmarked and simulated alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layout_model import Layout


@dataclass(frozen=True)
class TaskRequest:
    role: str
    index: int
    cpu: int
    memory_mb: int
    gpu: int


@dataclass
class GangRequest:
    """One job attempt that needs all of `tasks` placed at once."""

    key: str  # "<user>~<job>"
    attempt: int
    user: str
    virtual_cluster: str
    priority: int  # higher first; -1 is opportunistic
    submit_time: int  # epoch ms; FIFO inside a priority
    tasks: list[TaskRequest]
    gang: bool = True
    hived: dict = field(default_factory=dict)


@dataclass
class TaskPlacement:
    node: str
    host_ip: str
    gpus: list[int]  # device indices on that node
    cells: list[str] = field(default_factory=list)  # leaf cell addresses (cell schedulers), for restore


@dataclass
class GangPlacement:
    key: str
    attempt: int
    tasks: dict[tuple[str, int], TaskPlacement]  # (role, index) -> placement
    # a guaranteed gang running on idle cells outside its VC's quota (preemptible): restore must know
    borrowed: bool = False

    def to_json(self) -> dict:
        out: dict[str, dict] = {}
        for (role, index), p in self.tasks.items():
            task = {"node": p.node, "hostIp": p.host_ip, "gpus": p.gpus, "cells": p.cells}
            if self.borrowed:
                task["borrowed"] = True
            out[f"{role}/{index}"] = task
        return out

    @classmethod
    def from_json(cls, key: str, attempt: int, data: dict) -> GangPlacement:
        tasks = {}
        for k, v in data.items():
            role, index = k.rsplit("/", 1)
            tasks[(role, int(index))] = TaskPlacement(v["node"], v["hostIp"], list(v["gpus"]), list(v.get("cells", [])))
        return cls(key, attempt, tasks, any(v.get("borrowed") for v in data.values()))


@dataclass
class WaitInfo:
    """Why a gang is still waiting, for people: the reason and its place in the queue (1-based)."""

    reason: str
    position: int


@dataclass
class Decision:
    placed: list[GangPlacement] = field(default_factory=list)
    # Keys of running gangs to preempt so that a waiting gang can be placed (HiveD scheduler).
    preempt: list[str] = field(default_factory=list)


class SchedulerError(ValueError):
    """A request that can never be satisfied (e.g. a task bigger than any node)."""


class Scheduler(ABC):
    """Places whole gangs of tasks on nodes; see module docstring."""

    @classmethod
    def from_layout(cls, layout: Layout) -> Scheduler:
        """The scheduler for a cluster layout (how the engine builds the configured class)."""
        return cls(layout)  # type: ignore[call-arg]

    @abstractmethod
    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        """Place what fits from `queue` (any order given; the scheduler orders it)."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Free everything held by gang `key` (no-op when unknown)."""

    @abstractmethod
    def restore(self, placement: GangPlacement, request: GangRequest | None = None) -> None:
        """Re-take a placement recorded in the store (after an engine restart); `request`
        gives the sizes of the gang's tasks."""

    def restore_all(self, items: Sequence[tuple[GangPlacement, GangRequest | None]]) -> None:
        """Restore every recorded placement at once (an engine start). Schedulers whose view depends
        on how placements fit together (cells bound to VCs) override it to decide over the whole set."""
        for placement, request in items:
            self.restore(placement, request)

    @abstractmethod
    def why_waiting(self, key: str) -> WaitInfo | None:
        """The reason `key` was not placed by the last `schedule` call, or None."""

    def check(self, request: GangRequest) -> None:  # noqa: B027 - optional hook
        """Raise SchedulerError when `request` can never fit; called at submit time."""
