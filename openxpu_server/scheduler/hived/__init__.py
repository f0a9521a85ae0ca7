"""HiveD-style cell scheduler (scheduling.md §1): virtual clusters of cells, buddy allocation,
topology-aware packing, guaranteed vs opportunistic priorities, reserved preemption and gangs."""

from .scheduler import HivedScheduler

__all__ = ["HivedScheduler"]
