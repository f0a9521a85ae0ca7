"""The single-box scheduler: fits whole gangs by cpu, memory and GPU count, by priority then FIFO.

Pure Python, no I/O. The engine's default is the HiveD-style cell scheduler (`scheduler/hived/`);
this one stays as the simple alternative (`c.OpenXPU.scheduler_class = FitScheduler`).
Gangs that do not fit are skipped, so smaller jobs behind them may still start (backfill).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import Decision, GangPlacement, GangRequest, Scheduler, SchedulerError, TaskPlacement, WaitInfo
from .layout import iter_cells
from .layout_model import Layout


@dataclass
class Node:
    name: str
    host_ip: str
    cpu: int
    memory_mb: int
    gpus: list[int]
    used_cpu: int = 0
    used_memory_mb: int = 0
    used_gpus: set[int] = field(default_factory=set)

    def free_gpus(self) -> list[int]:
        return [g for g in self.gpus if g not in self.used_gpus]

    def fits(self, cpu: int, memory_mb: int, gpu: int) -> bool:
        return (
            self.used_cpu + cpu <= self.cpu
            and self.used_memory_mb + memory_mb <= self.memory_mb
            and len(self.free_gpus()) >= gpu
        )


def nodes_from_layout(layout: Layout) -> list[Node]:
    """One Node per layout node: its leaf cells' SKU resources summed, GPU leaves as devices."""
    found: dict[str, Node] = {}
    for info in iter_cells(layout):
        if info.level != 1 or info.node is None:
            continue
        leaf = info.cell.cell_type
        sku = layout.sku_types[leaf]
        host_ip = layout.nodes[info.node].host_ip if info.node in layout.nodes else "127.0.0.1"
        node = found.setdefault(info.node, Node(info.node, host_ip, 0, 0, []))
        node.cpu += sku.cpu
        node.memory_mb += sku.memory_mb
        if sku.gpu > 0:
            node.gpus.append(int(info.cell.address or len(node.gpus)))
    return list(found.values())


class FitScheduler(Scheduler):
    @classmethod
    def from_layout(cls, layout: Layout) -> FitScheduler:
        return cls(nodes_from_layout(layout))

    def __init__(self, nodes: Sequence[Node]):
        if not nodes:
            raise ValueError("a scheduler needs at least one node")
        self.nodes = {n.name: n for n in nodes}
        self._held: dict[str, GangPlacement] = {}
        self._need: dict[str, list[tuple[str, int, int]]] = {}  # key -> [(node, cpu, mem)] to release
        self._waiting: dict[str, WaitInfo] = {}

    # -- queue ---------------------------------------------------------------------------
    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        decision = Decision()
        self._waiting = {}
        ordered = sorted(queue, key=lambda r: (-r.priority, r.submit_time, r.key))
        position = 0
        for req in ordered:
            if req.key in self._held:
                continue
            placement = self._try_place(req)
            if placement is None:
                position += 1
                self._waiting[req.key] = WaitInfo(self._reason(req), position)
            else:
                decision.placed.append(placement)
        return decision

    def _try_place(self, req: GangRequest) -> GangPlacement | None:
        # Tentatively take resources task by task, biggest first; undo everything on failure.
        taken: list[tuple[Node, int, int, list[int]]] = []
        tasks: dict[tuple[str, int], TaskPlacement] = {}
        for t in sorted(req.tasks, key=lambda t: (-t.gpu, -t.cpu, -t.memory_mb, t.role, t.index)):
            node = next((n for n in self.nodes.values() if n.fits(t.cpu, t.memory_mb, t.gpu)), None)
            if node is None:
                for n, cpu, mem, gpus in taken:
                    n.used_cpu -= cpu
                    n.used_memory_mb -= mem
                    n.used_gpus.difference_update(gpus)
                return None
            gpus = node.free_gpus()[: t.gpu]
            node.used_cpu += t.cpu
            node.used_memory_mb += t.memory_mb
            node.used_gpus.update(gpus)
            taken.append((node, t.cpu, t.memory_mb, gpus))
            tasks[(t.role, t.index)] = TaskPlacement(node.name, node.host_ip, gpus)
        placement = GangPlacement(req.key, req.attempt, tasks)
        self._held[req.key] = placement
        self._need[req.key] = [(n.name, cpu, mem) for n, cpu, mem, _ in taken]
        return placement

    def _reason(self, req: GangRequest) -> str:
        cpu = sum(t.cpu for t in req.tasks)
        mem = sum(t.memory_mb for t in req.tasks)
        gpu = sum(t.gpu for t in req.tasks)
        free_cpu = sum(n.cpu - n.used_cpu for n in self.nodes.values())
        free_mem = sum(n.memory_mb - n.used_memory_mb for n in self.nodes.values())
        free_gpu = sum(len(n.free_gpus()) for n in self.nodes.values())
        short = []
        if cpu > free_cpu:
            short.append(f"{cpu} CPUs ({free_cpu} free)")
        if mem > free_mem:
            short.append(f"{mem} MB memory ({free_mem} MB free)")
        if gpu > free_gpu:
            short.append(f"{gpu} GPUs ({free_gpu} free)")
        what = ", ".join(short) or "its tasks on single nodes (resources are fragmented)"
        return f"vc {req.virtual_cluster}: waiting for resources; {len(req.tasks)} task(s) need {what}"

    # -- bookkeeping ---------------------------------------------------------------------
    def release(self, key: str) -> None:
        placement = self._held.pop(key, None)
        if placement is None:
            return
        for (node_name, cpu, mem), p in zip(self._need.pop(key), placement.tasks.values(), strict=False):
            node = self.nodes[node_name]
            node.used_cpu -= cpu
            node.used_memory_mb -= mem
            node.used_gpus.difference_update(p.gpus)

    def restore(self, placement: GangPlacement, request: GangRequest | None = None) -> None:
        if placement.key in self._held:
            return
        sizes = {(t.role, t.index): t for t in request.tasks} if request else {}
        need = []
        for rk, p in placement.tasks.items():
            node = self.nodes.get(p.node) or next(iter(self.nodes.values()))
            t = sizes.get(rk)
            cpu, mem = (t.cpu, t.memory_mb) if t else (0, 0)
            node.used_cpu += cpu
            node.used_memory_mb += mem
            node.used_gpus.update(p.gpus)
            need.append((node.name, cpu, mem))
        self._held[placement.key] = placement
        self._need[placement.key] = need

    def why_waiting(self, key: str) -> WaitInfo | None:
        return self._waiting.get(key)

    def check(self, request: GangRequest) -> None:
        for t in request.tasks:
            if not any(n.cpu >= t.cpu and n.memory_mb >= t.memory_mb and len(n.gpus) >= t.gpu for n in self.nodes.values()):
                biggest = max(self.nodes.values(), key=lambda n: (len(n.gpus), n.cpu, n.memory_mb))
                raise SchedulerError(
                    f"taskRoles.{t.role}.resourcePerInstance: a task needs cpu {t.cpu}, memoryMB {t.memory_mb}, "
                    f"gpu {t.gpu}, but the largest node ({biggest.name}) has cpu {biggest.cpu}, "
                    f"memoryMB {biggest.memory_mb}, gpu {len(biggest.gpus)}"
                )
        if request.gang:
            empty = FitScheduler([Node(n.name, n.host_ip, n.cpu, n.memory_mb, list(n.gpus)) for n in self.nodes.values()])
            if empty._try_place(request) is None:
                need = (
                    f"cpu {sum(t.cpu for t in request.tasks)}, memoryMB {sum(t.memory_mb for t in request.tasks)}, "
                    f"gpu {sum(t.gpu for t in request.tasks)}"
                )
                have = (
                    f"cpu {sum(n.cpu for n in self.nodes.values())}, "
                    f"memoryMB {sum(n.memory_mb for n in self.nodes.values())}, "
                    f"gpu {sum(len(n.gpus) for n in self.nodes.values())}"
                )
                raise SchedulerError(
                    f"taskRoles: the gang of {len(request.tasks)} tasks needs {need} at once, more than the "
                    f"whole cluster ({have}) even when idle"
                )
