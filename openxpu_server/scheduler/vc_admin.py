"""A scheduler wrapper for what HiveD itself does not do: VCs changed at runtime, per-user limits.

`ManagedScheduler` sits between the controller and the real scheduler (installed by the app):

- **Per-user limits** per VC (`maxGpuPerUser`, `maxJobsPerUser`): a gang whose user would go over
  is kept out of the queue handed to the inner scheduler, and `why_waiting` says which limit holds
  it, so one user cannot take the whole VC.
- **Runtime VC changes**: `swap(new_inner)` replaces the inner scheduler (built from the new
  layout) under the same lock every call takes, after restoring into it every gang held now. The
  wrapper mirrors held gangs itself (placements it returned, restores, releases), so a placement
  decided but not yet persisted by the controller is carried over too.

Everything else (`vc_status`, `node_status`, `set_node_health`, ...) passes through to the inner one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import Decision, GangPlacement, GangRequest, Scheduler, WaitInfo


@dataclass(frozen=True)
class UserLimits:
    max_gpu_per_user: int | None = None
    max_jobs_per_user: int | None = None


class ManagedScheduler(Scheduler):
    def __init__(self, inner: Scheduler, limits: dict[str, UserLimits] | None = None):
        self.inner = inner
        self.limits: dict[str, UserLimits] = dict(limits or {})
        self._lock = threading.RLock()
        self._held: dict[str, tuple[GangPlacement, GangRequest | None]] = {}
        self._limited: dict[str, WaitInfo] = {}

    def __getattr__(self, name: str) -> Any:  # vc_status, node_status, layout, ... of the inner one
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ------------------------------------------------------------------ administration
    def swap(self, new_inner: Scheduler) -> None:
        """Use `new_inner` from now on, with every currently held gang restored into it."""
        with self._lock:
            new_inner.restore_all(list(self._held.values()))
            self.inner = new_inner

    def set_limits(self, vc: str, limits: UserLimits | None) -> None:
        with self._lock:
            if limits is None or limits == UserLimits():
                self.limits.pop(vc, None)
            else:
                self.limits[vc] = limits

    def usage(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(user, VC) -> (GPUs, gangs) held now, in VCs with limits (one pass per schedule call)."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for _, req in self._held.values():
            if req is not None and req.virtual_cluster in self.limits:
                key = (req.user, req.virtual_cluster)
                gpus, jobs = out.get(key, (0, 0))
                out[key] = (gpus + sum(t.gpu for t in req.tasks), jobs + 1)
        return out

    # ------------------------------------------------------------------ Scheduler
    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        with self._lock:
            self._limited = {}
            admitted: list[GangRequest] = []
            # held now, plus what this call admits (it may all be placed)
            used = self.usage() if self.limits else {}
            for req in sorted(queue, key=lambda r: (r.submit_time, r.key)):
                lim = self.limits.get(req.virtual_cluster)
                if lim is None:
                    admitted.append(req)
                    continue
                key = (req.user, req.virtual_cluster)
                gpus, jobs = used.get(key, (0, 0))
                need = sum(t.gpu for t in req.tasks)
                reason = None
                if lim.max_jobs_per_user is not None and jobs + 1 > lim.max_jobs_per_user:
                    reason = (f"user {req.user} already runs {jobs} job(s) in VC {req.virtual_cluster}; "
                              f"maxJobsPerUser is {lim.max_jobs_per_user}")
                elif lim.max_gpu_per_user is not None and gpus + need > lim.max_gpu_per_user:
                    reason = (f"user {req.user} uses {gpus} GPU(s) in VC {req.virtual_cluster} and this job "
                              f"needs {need}; maxGpuPerUser is {lim.max_gpu_per_user}")
                if reason is None:
                    admitted.append(req)
                    used[key] = (gpus + need, jobs + 1)
                else:
                    self._limited[req.key] = WaitInfo(reason, len(self._limited) + 1)
            decision = self.inner.schedule(admitted)
            requests = {r.key: r for r in admitted}
            for placement in decision.placed:
                self._held[placement.key] = (placement, requests.get(placement.key))
            return decision

    def release(self, key: str) -> None:
        with self._lock:
            self._held.pop(key, None)
            self.inner.release(key)

    def restore(self, placement: GangPlacement, request: GangRequest | None = None) -> None:
        with self._lock:
            self.inner.restore(placement, request)
            self._held[placement.key] = (placement, request)

    def restore_all(self, items: Sequence[tuple[GangPlacement, GangRequest | None]]) -> None:
        with self._lock:
            self.inner.restore_all(items)
            for placement, request in items:
                self._held[placement.key] = (placement, request)

    def why_waiting(self, key: str) -> WaitInfo | None:
        with self._lock:
            return self._limited.get(key) or self.inner.why_waiting(key)

    def check(self, request: GangRequest) -> None:
        self.inner.check(request)
