"""Scheduler port: the narrow place / release / why-waiting interface and its implementations."""

from .base import (
    Decision,
    GangPlacement,
    GangRequest,
    Scheduler,
    SchedulerError,
    TaskPlacement,
    TaskRequest,
    WaitInfo,
)
from .fit import FitScheduler, Node

__all__ = [
    "Decision",
    "FitScheduler",
    "GangPlacement",
    "GangRequest",
    "Node",
    "Scheduler",
    "SchedulerError",
    "TaskPlacement",
    "TaskRequest",
    "WaitInfo",
]
