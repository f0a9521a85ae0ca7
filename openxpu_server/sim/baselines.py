"""Two baseline schedulers to compare HiveD with, both over a `Layout` seen as nodes of leaf cells
(no cell topology; pinned cells are left out, see `cluster.ClusterInfo`): tasks are placed
first-fit on nodes, a gang whole or not at all.

- `QuotaScheduler`: capacity scheduling like YARN's CapacityScheduler. Each VC's capacity is its
  guaranteed leaf cells (its share of the cluster); a VC may use idle cells beyond it (elastic
  borrowing) up to `max_capacity` of the cluster (default 100 %). The most under-served VC (lowest
  used / capacity) is served first, inside a VC by priority then submit time; a job that does not
  fit is skipped, so smaller ones behind it start (backfill). No preemption unless `reclaim=True`:
  then a VC under its capacity takes cells back from VCs over theirs by preempting their newest,
  lowest-priority jobs.
- `FifoScheduler`: one global queue by submit time, no VCs, no priorities: the head job blocks
  everything behind it until it fits (head-of-line blocking).

A task needs `skuNum` leaf cells when its role gives one in `hived.taskRoles`, else enough leaf
cells to cover its GPUs, CPUs and memory (`cluster.cells_for_task`); `skuType` restricts it to nodes
of that leaf type.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from ..scheduler.base import (
    Decision,
    GangPlacement,
    GangRequest,
    Scheduler,
    SchedulerError,
    TaskPlacement,
    WaitInfo,
)
from ..scheduler.layout_model import Layout
from .cluster import NEVER, ClusterInfo, cells_for_task, cluster_info, role_hived


@dataclass
class _Held:
    vc: str
    attempt: int
    cells: int
    priority: int
    seq: int  # start order: larger = newer
    picks: list[tuple[int, list[int]]]  # (node index, leaf indices)


class _NodePool(Scheduler):
    """Free leaf cells per node, first-fit gang placement, and the bookkeeping both baselines share."""

    def __init__(self, layout: Layout | ClusterInfo):
        info = layout if isinstance(layout, ClusterInfo) else cluster_info(layout)
        if not info.nodes:
            raise ValueError("a scheduler needs at least one node")
        self.info = info
        self.nodes = info.nodes
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.free: list[list[int]] = [list(range(n.leaves)) for n in self.nodes]
        self.total = info.total_leaves
        self.total_free = self.total
        self.types = sorted({n.leaf_type for n in self.nodes})
        self.held: dict[str, _Held] = {}
        self.used: dict[str, int] = {}  # VC -> leaf cells in use
        self._seq = 0
        self._waiting: dict[str, WaitInfo] = {}
        self._lazy: dict[str, tuple[int, GangRequest, str]] = {}  # key -> (position, request, why code)
        self._demands: dict[str, tuple[GangRequest, tuple[str | None, tuple[int, ...]]]] = {}

    # -- demand ------------------------------------------------------------------------------
    def _demand(self, req: GangRequest) -> tuple[str | None, tuple[int, ...]]:
        """(leaf type or None for any, cells per task sorted descending)."""
        cached = self._demands.get(req.key)
        if cached is None or cached[0] is not req:  # the same request object as before: its demand
            cached = self._demands[req.key] = (req, self._compute_demand(req))
        return cached[1]

    def _compute_demand(self, req: GangRequest) -> tuple[str | None, tuple[int, ...]]:
        leaf_type = None
        cells = []
        for t in req.tasks:
            h = role_hived(req, t.role)
            leaf_type = h.get("skuType") or leaf_type
            sku = self.info.sku.get(leaf_type or self.info.main_leaf_type)
            cells.append(cells_for_task(t, sku, h.get("skuNum")))
        return leaf_type, tuple(sorted(cells, reverse=True))

    # -- placement ---------------------------------------------------------------------------
    def _fit(self, leaf_type: str | None, cells: tuple[int, ...]) -> list[tuple[int, int]] | None:
        """First-fit node per task (biggest first) without taking anything: [(node, cells)]."""
        if sum(cells) > self.total_free:
            return None
        taken: dict[int, int] = {}
        picks = []
        for c in cells:
            for i, n in enumerate(self.nodes):
                if (leaf_type is None or n.leaf_type == leaf_type) and len(self.free[i]) - taken.get(i, 0) >= c:
                    taken[i] = taken.get(i, 0) + c
                    picks.append((i, c))
                    break
            else:
                return None
        return picks

    def _take(self, req: GangRequest, picks: list[tuple[int, int]], cells_total: int) -> GangPlacement:
        ordered = sorted(req.tasks, key=lambda t: (-self._task_cells(req, t), t.role, t.index))
        tasks = {}
        held_picks = []
        for t, (i, c) in zip(ordered, picks, strict=True):
            leaves, self.free[i] = self.free[i][:c], self.free[i][c:]
            node = self.nodes[i]
            g = node.gpus_per_leaf
            gpus = [leaf * g + k for leaf in leaves for k in range(g)]
            tasks[(t.role, t.index)] = TaskPlacement(node.name, node.host_ip, gpus, [f"{node.name}/{leaf}" for leaf in leaves])
            held_picks.append((i, leaves))
        self.total_free -= cells_total
        self._seq += 1
        self.held[req.key] = _Held(req.virtual_cluster, req.attempt, cells_total, req.priority, self._seq, held_picks)
        self.used[req.virtual_cluster] = self.used.get(req.virtual_cluster, 0) + cells_total
        return GangPlacement(req.key, req.attempt, tasks)

    def _task_cells(self, req: GangRequest, t) -> int:
        h = role_hived(req, t.role)
        sku = self.info.sku.get(h.get("skuType") or self.info.main_leaf_type)
        return cells_for_task(t, sku, h.get("skuNum"))

    def release(self, key: str) -> None:
        held = self.held.pop(key, None)
        if held is None:
            return
        self._demands.pop(key, None)
        for i, leaves in held.picks:
            self.free[i] = sorted(self.free[i] + leaves)
        self.total_free += held.cells
        self.used[held.vc] -= held.cells

    def restore(self, placement: GangPlacement, request: GangRequest | None = None) -> None:
        if placement.key in self.held:
            return
        picks = []
        cells_total = 0
        for p in placement.tasks.values():
            i = self.index.get(p.node)
            if i is None:
                continue  # the node is gone from the layout: nothing to hold
            node = self.nodes[i]
            if p.cells:
                leaves = [int(c.rsplit("/", 1)[1]) for c in p.cells]
            else:
                g = max(1, node.gpus_per_leaf)
                leaves = sorted({gpu // g for gpu in p.gpus})
            leaves = [leaf for leaf in leaves if leaf in self.free[i]]
            self.free[i] = [leaf for leaf in self.free[i] if leaf not in leaves]
            picks.append((i, leaves))
            cells_total += len(leaves)
        vc = request.virtual_cluster if request else ""
        self._seq += 1
        self.held[placement.key] = _Held(vc, placement.attempt, cells_total, request.priority if request else 0, self._seq, picks)
        self.used[vc] = self.used.get(vc, 0) + cells_total
        self.total_free -= cells_total

    # -- checks and reasons ------------------------------------------------------------------
    def check(self, request: GangRequest) -> None:
        leaf_type, cells = self._demand(request)
        nodes = [n for n in self.nodes if leaf_type is None or n.leaf_type == leaf_type]
        if not nodes:
            raise SchedulerError(f"skuType {leaf_type!r} is not a leaf cell type of the cluster (known: {', '.join(self.types)})")
        biggest = max(n.leaves for n in nodes)
        if cells and cells[0] > biggest:
            what = "a GPU" if cells[0] >= NEVER else f"{cells[0]} leaf cells"
            raise SchedulerError(f"a task needs {what} on one node, but the largest node has {biggest}")
        if request.gang and sum(cells) > sum(n.leaves for n in nodes):
            raise SchedulerError(
                f"the gang of {len(cells)} tasks needs {sum(cells)} leaf cells at once, more than the whole "
                f"cluster ({sum(n.leaves for n in nodes)}) even when idle"
            )

    def _resource_reason(self, cells: tuple[int, ...], leaf_type: str | None) -> str:
        need = sum(cells)
        largest = max((len(f) for f, n in zip(self.free, self.nodes, strict=True) if leaf_type is None or n.leaf_type == leaf_type), default=0)
        shape = f"{len(cells)} task(s) of {cells[0]} leaf cell(s)" if len(set(cells)) == 1 else f"tasks of {list(cells)} leaf cells"
        if need > self.total_free:
            total = f" ({need} in all)" if len(cells) > 1 else ""
            return f"waiting for resources: needs {shape}{total}, {self.total_free} free in the cluster"
        return (
            f"waiting for resources: needs {shape}; {self.total_free} leaf cells are free but fragmented "
            f"(at most {largest} free on one node)"
        )

    def why_waiting(self, key: str) -> WaitInfo | None:
        info = self._waiting.get(key)
        if info is not None:
            return info
        lazy = self._lazy.get(key)
        if lazy is None:
            return None
        info = WaitInfo(self._explain(lazy[1], lazy[2]), lazy[0])
        self._waiting[key] = info
        return info

    def _explain(self, req: GangRequest, code: str) -> str:
        raise NotImplementedError

    def _start_call(self) -> None:
        self._waiting = {}
        self._lazy = {}


class QuotaScheduler(_NodePool):
    """Capacity scheduling (YARN CapacityScheduler-like); see the module docstring.

    `max_capacity`: the most of the cluster one VC may use, as a fraction (one number for all VCs or
    a dict VC -> fraction; default 1.0). `reclaim`: preempt borrowers to give a VC back its capacity.
    """

    def __init__(self, layout: Layout | ClusterInfo, *, max_capacity: float | dict[str, float] = 1.0, reclaim: bool = False):
        super().__init__(layout)
        self.capacity = dict(self.info.quota)
        self.reclaim = reclaim
        fractions = max_capacity if isinstance(max_capacity, dict) else {}
        default = 1.0 if isinstance(max_capacity, dict) else float(max_capacity)
        self.max_cells = {vc: int(fractions.get(vc, default) * self.total) for vc in self.capacity}
        self._default_max = int(default * self.total)

    def _max(self, vc: str) -> int:
        return max(self.max_cells.get(vc, self._default_max), self.capacity.get(vc, 0))

    def _ratio(self, vc: str) -> tuple[float, float]:
        cap = self.capacity.get(vc, 0)
        used = self.used.get(vc, 0)
        return (used / cap, 0.0) if cap else (float("inf"), used)

    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        self._start_call()
        decision = Decision()
        by_vc: dict[str, list[GangRequest]] = {}
        for req in queue:
            if req.key not in self.held:
                by_vc.setdefault(req.virtual_cluster, []).append(req)
        heap = []
        for vc, reqs in by_vc.items():
            reqs.sort(key=lambda r: (-r.priority, r.submit_time, r.key))
            heap.append((self._ratio(vc), vc, 0))
        heapq.heapify(heap)
        failed: set[tuple] = set()  # shapes that did not fit: nothing frees up during a call
        unfit: list[tuple[GangRequest, str]] = []
        while heap:
            _, vc, pos = heapq.heappop(heap)
            reqs = by_vc[vc]
            req = reqs[pos]
            if pos + 1 < len(reqs):
                heapq.heappush(heap, (self._ratio(vc), vc, pos + 1))
            leaf_type, cells = self._demand(req)
            need = sum(cells)
            limit = self._max(vc)
            if limit < self.total and self.used.get(vc, 0) + need > limit:
                unfit.append((req, "max"))
                continue
            shape = (leaf_type, cells)
            picks = None if shape in failed else self._fit(leaf_type, cells)
            if picks is None:
                failed.add(shape)
                unfit.append((req, "resources"))
                continue
            decision.placed.append(self._take(req, picks, need))
            if pos + 1 < len(reqs):  # its ratio changed: re-key its next request
                heap = [(self._ratio(v), v, p) if v == vc else (r, v, p) for r, v, p in heap]
                heapq.heapify(heap)
        if self.reclaim and unfit:
            decision.preempt, reclaiming = self._reclaim(unfit)
            unfit = [(r, "reclaim" if r.key in reclaiming else c) for r, c in unfit]
        for position, (req, code) in enumerate(unfit, 1):
            self._lazy[req.key] = (position, req, code)
        return decision

    def _reclaim(self, unfit: list[tuple[GangRequest, str]]) -> tuple[list[str], set[str]]:
        """Victims for waiting jobs of VCs under capacity: newest, lowest-priority jobs of VCs over it."""
        victims: list[str] = []
        chosen: set[str] = set()
        reclaiming: set[str] = set()
        borrowed = {vc: used - self.capacity.get(vc, 0) for vc, used in self.used.items()}
        for req, code in unfit:
            if code != "resources":
                continue
            vc = req.virtual_cluster
            leaf_type, cells = self._demand(req)
            if self.used.get(vc, 0) + sum(cells) > self.capacity.get(vc, 0):
                continue  # only a VC's guaranteed capacity is reclaimed
            candidates = sorted(
                (
                    (h.priority, -h.seq, key)
                    for key, h in self.held.items()
                    if key not in chosen and h.vc != vc and borrowed.get(h.vc, 0) > 0
                ),
            )
            freed: list[str] = []
            for _, _, key in candidates:
                h = self.held[key]
                if borrowed.get(h.vc, 0) <= 0:
                    continue
                freed.append(key)
                borrowed[h.vc] -= h.cells
                if self._fits_without(freed, leaf_type, cells):
                    break
            else:
                for key in freed:
                    borrowed[self.held[key].vc] += self.held[key].cells
                continue
            chosen.update(freed)
            victims.extend(freed)
            reclaiming.add(req.key)
        return victims, reclaiming

    def _fits_without(self, keys: list[str], leaf_type: str | None, cells: tuple[int, ...]) -> bool:
        saved = [list(f) for f in self.free], self.total_free
        for key in keys:
            h = self.held[key]
            for i, leaves in h.picks:
                self.free[i] = self.free[i] + leaves
            self.total_free += h.cells
        ok = self._fit(leaf_type, cells) is not None
        self.free, self.total_free = saved
        return ok

    def _explain(self, req: GangRequest, code: str) -> str:
        vc = req.virtual_cluster
        leaf_type, cells = self._demand(req)
        used, cap = self.used.get(vc, 0), self.capacity.get(vc, 0)
        usage = f"vc {vc} uses {used} of its capacity {cap} leaf cells"
        if code == "max":
            return f"{usage}; {sum(cells)} more would pass its maximum capacity ({self._max(vc)} leaf cells)"
        if code == "reclaim":
            return f"{usage}; preempting jobs of VCs over their capacity to give it back its cells"
        return f"{usage}; {self._resource_reason(cells, leaf_type)}"


class FifoScheduler(_NodePool):
    """One global FIFO queue by submit time with head-of-line blocking; VCs and priorities ignored."""

    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        self._start_call()
        decision = Decision()
        ordered = sorted((r for r in queue if r.key not in self.held), key=lambda r: (r.submit_time, r.key))
        for n, req in enumerate(ordered):
            leaf_type, cells = self._demand(req)
            picks = self._fit(leaf_type, cells)
            if picks is None:
                self._lazy[req.key] = (1, req, "head")
                for position, other in enumerate(ordered[n + 1 :], 2):
                    self._lazy[other.key] = (position, other, req.key)
                break
            decision.placed.append(self._take(req, picks, sum(cells)))
        return decision

    def _explain(self, req: GangRequest, code: str) -> str:
        if code == "head":
            leaf_type, cells = self._demand(req)
            return f"first in the FIFO queue; {self._resource_reason(cells, leaf_type)}"
        return f"behind {code} in the FIFO queue (head-of-line blocking: nothing passes the first waiting job)"
