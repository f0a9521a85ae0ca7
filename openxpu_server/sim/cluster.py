"""What the simulator and the baseline schedulers need to know about a `Layout`, read from its plain
dataclasses: the nodes with their leaf cells, each VC's quota in leaf cells, and small layouts built
in code (a uniform cluster, one VC's private cluster).

Leaf cells are counted by walking `cellTypes` (a type not defined there is a leaf type). Physical
cells whose children are omitted get their implied children; node-level cells without an address are
named `<parent address>-<i>` (the layout loader normally names them already).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..scheduler.base import GangRequest, TaskRequest
from ..scheduler.layout_model import (
    CellType,
    Layout,
    NodeInfo,
    PhysicalCellSpec,
    SkuType,
    VirtualCellSpec,
    VirtualClusterSpec,
)


@dataclass
class SimNode:
    name: str
    host_ip: str
    leaf_type: str
    leaves: int  # leaf cells open to every job (pinned ones excluded)
    gpus_per_leaf: int
    pinned_leaves: int = 0  # leaf cells inside pinned cells (only jobs naming the pinnedCellId)


@dataclass
class ClusterInfo:
    """The simulated cluster: nodes with their open leaf cells, VC quotas in leaf cells.

    Pinned cells are kept out: only jobs that name their pinnedCellId may use them, and simulated
    jobs name none. A node that is pinned whole is not in `nodes`.
    """

    nodes: list[SimNode]
    quota: dict[str, int]  # VC -> guaranteed leaf cells from its virtualCells
    sku: dict[str, SkuType] = field(default_factory=dict)
    pinned: dict[str, int] = field(default_factory=dict)  # VC -> leaf cells of its pinned cells

    @property
    def total_leaves(self) -> int:
        return sum(n.leaves for n in self.nodes)

    @property
    def total_gpus(self) -> int:
        return sum(n.leaves * n.gpus_per_leaf for n in self.nodes)

    @property
    def leaf_types(self) -> list[str]:
        return sorted({n.leaf_type for n in self.nodes})

    @property
    def main_leaf_type(self) -> str:
        """The leaf type with the most cells."""
        count: dict[str, int] = {}
        for n in self.nodes:
            count[n.leaf_type] = count.get(n.leaf_type, 0) + n.leaves
        return max(count, key=lambda k: (count[k], k)) if count else ""

    @property
    def node_leaves(self) -> int:
        """The most leaf cells on one node (the largest task that fits)."""
        return max((n.leaves for n in self.nodes), default=0)


def leaf_count(layout: Layout, cell_type: str) -> int:
    """Leaf cells inside one cell of `cell_type` (a dotted path: its last segment counts)."""
    name = cell_type.rsplit(".", 1)[-1]
    n = 1
    seen = set()
    while name in layout.cell_types:
        if name in seen:
            raise ValueError(f"cellTypes: {name} is its own descendant")
        seen.add(name)
        ct = layout.cell_types[name]
        n *= ct.child_cell_number
        name = ct.child_cell_type
    return n


def leaf_type_of(layout: Layout, cell_type: str) -> str:
    name = cell_type.rsplit(".", 1)[-1]
    while name in layout.cell_types:
        name = layout.cell_types[name].child_cell_type
    return name


def _node_level_type(layout: Layout, cell_type: str) -> str | None:
    """The node-level type at or below `cell_type`, or None when `cell_type` is below node level."""
    name = cell_type
    while name in layout.cell_types:
        if layout.cell_types[name].is_node_level:
            return name
        name = layout.cell_types[name].child_cell_type
    return None


def cluster_info(layout: Layout) -> ClusterInfo:
    nodes: list[SimNode] = []

    def gpus(leaf: str) -> int:
        sku = layout.sku_types.get(leaf)
        return sku.gpu if sku is not None else 1

    def pinned_below(cell: PhysicalCellSpec) -> int:
        if cell.pinned_cell_id is not None:
            return leaf_count(layout, cell.cell_type)
        return sum(pinned_below(c) for c in cell.children)

    def walk(cell: PhysicalCellSpec, path: str, pinned: bool) -> None:
        pinned = pinned or cell.pinned_cell_id is not None
        ct = layout.cell_types.get(cell.cell_type)
        if ct is None or ct.is_node_level:
            name = cell.address or path
            info = layout.nodes.get(name)
            leaf = leaf_type_of(layout, cell.cell_type)
            total = leaf_count(layout, cell.cell_type)
            closed = total if pinned else min(total, pinned_below(cell))
            if closed < total:
                host = info.host_ip if info else "127.0.0.1"
                nodes.append(SimNode(name, host, leaf, total - closed, gpus(leaf), closed))
            return
        children = cell.children or [PhysicalCellSpec(ct.child_cell_type) for _ in range(ct.child_cell_number)]
        for i, child in enumerate(children):
            walk(child, f"{path}-{child.address if child.address is not None else i}", pinned)

    for i, top in enumerate(layout.physical_cells):
        walk(top, top.address or f"{top.cell_type.lower()}{i}", False)
    pinned_leaves = _pinned_leaves(layout)
    quota = {}
    pinned = {}
    for name, vc in layout.virtual_clusters.items():
        quota[name] = sum(v.cell_number * leaf_count(layout, v.cell_type) for v in vc.virtual_cells)
        pinned[name] = sum(pinned_leaves.get(p, 0) for p in vc.pinned_cells)
    return ClusterInfo(nodes, quota, dict(layout.sku_types), pinned)


def quota_by_leaf_type(layout: Layout, vc: str) -> dict[str, int]:
    """`vc`'s guaranteed leaf cells per leaf type (a gang is placed within one type)."""
    out: dict[str, int] = {}
    for v in layout.virtual_clusters[vc].virtual_cells:
        leaf = leaf_type_of(layout, v.cell_type)
        out[leaf] = out.get(leaf, 0) + v.cell_number * leaf_count(layout, v.cell_type)
    return out


def max_task_leaves(layout: Layout, vc: str) -> int:
    """The most leaf cells one task of `vc` can get: its biggest virtual cell, or a whole node
    when the cell is at or above node level (0 when the VC has no cells)."""
    best = 0
    for v in layout.virtual_clusters[vc].virtual_cells:
        if v.cell_number <= 0:
            continue
        last = v.cell_type.rsplit(".", 1)[-1]
        node_type = _node_level_type(layout, last)
        best = max(best, leaf_count(layout, node_type if node_type is not None else last))
    return best


def _pinned_leaves(layout: Layout) -> dict[str, int]:
    out: dict[str, int] = {}

    def walk(cell: PhysicalCellSpec) -> None:
        if cell.pinned_cell_id is not None:
            out[cell.pinned_cell_id] = out.get(cell.pinned_cell_id, 0) + leaf_count(layout, cell.cell_type)
        for c in cell.children:
            walk(c)

    for top in layout.physical_cells:
        walk(top)
    return out


# ------------------------------------------------------------------------------------------ builders
def normalized(layout: Layout) -> Layout:
    """`layout` validated and with every implied cell filled in (through the layout loader)."""
    from ..scheduler.layout import load_layout, to_dict

    return load_layout(to_dict(layout))


def uniform_layout(
    nodes: int,
    gpus_per_node: int = 8,
    vcs: dict[str, int] | None = None,
    *,
    leaf_type: str = "GPU",
    cpu_per_gpu: int = 4,
    memory_mb_per_gpu: int = 32768,
    node_prefix: str = "node",
) -> Layout:
    """`nodes` identical nodes of `gpus_per_node` leaf cells; `vcs` maps VC -> whole nodes
    (default: one VC `default` owning every node). Validated by the layout loader."""
    node_type = f"{leaf_type}-NODE"
    vcs = {"default": nodes} if vcs is None else vcs
    if sum(vcs.values()) > nodes:
        raise ValueError(f"the VCs own {sum(vcs.values())} nodes but the cluster has {nodes}")
    return normalized(
        Layout(
            sku_types={leaf_type: SkuType(leaf_type, 1, cpu_per_gpu, memory_mb_per_gpu)},
            cell_types={node_type: CellType(node_type, leaf_type, gpus_per_node, True)},
            physical_cells=[PhysicalCellSpec(node_type, f"{node_prefix}{i}") for i in range(nodes)],
            virtual_clusters={
                name: VirtualClusterSpec(name, [VirtualCellSpec(node_type, n)] if n else []) for name, n in vcs.items()
            },
            nodes={f"{node_prefix}{i}": NodeInfo(f"{node_prefix}{i}") for i in range(nodes)},
        )
    )


def private_layout(layout: Layout, vc: str) -> Layout:
    """A cluster holding only `vc`'s quota, with `vc` its only VC (for the HiveD scheduler): each
    virtual cell becomes a top-level physical cell of the same type, its nodes named `<vc>-n<i>`; a
    cell below node level is carved out of as few whole nodes as hold them all, and the rest of those
    nodes is pinned to ids no VC owns (so nobody, not even opportunistic jobs, uses it). The VC's
    own pinned cells are left out (see `ClusterInfo`)."""
    spec = layout.virtual_clusters[vc]
    physical: list[PhysicalCellSpec] = []
    virtual: list[VirtualCellSpec] = []
    ids = itertools.count(1)
    spare = itertools.count(1)
    for v in spec.virtual_cells:
        if v.cell_number <= 0:
            continue
        parts = v.cell_type.split(".")
        last = parts[-1]
        if _node_level_type(layout, last) is not None:
            physical.extend(_named_cell(layout, last, vc, ids) for _ in range(v.cell_number))
            virtual.append(VirtualCellSpec(last, v.cell_number))
            continue
        node_type, per_node, path = _node_above(layout, v.cell_type, vc)
        nodes = [_named_cell(layout, node_type, vc, ids) for _ in range(math.ceil(v.cell_number / per_node))]
        # The node's cells beyond the quota are pinned to an id no VC owns: nobody may use them.
        units = [u for node in nodes for u in _expand(layout, node, last)]
        for u in units[v.cell_number :]:
            u.pinned_cell_id = f"{vc}-not-in-quota-{next(spare)}"
        physical.extend(nodes)
        virtual.append(VirtualCellSpec(path, v.cell_number))
    if not physical:
        raise ValueError(f"virtualClusters.{vc}: no virtual cells, so no private cluster")
    probe = Layout(layout.sku_types, layout.cell_types, physical, {}, layout.nodes)
    nodes = {n.name: layout.nodes.get(n.name, NodeInfo(n.name)) for n in cluster_info(probe).nodes}
    return normalized(
        Layout(
            sku_types=dict(layout.sku_types),
            cell_types=dict(layout.cell_types),
            physical_cells=physical,
            virtual_clusters={vc: VirtualClusterSpec(vc, virtual)},
            nodes=nodes,
        )
    )


def private_cluster(layout: Layout, vc: str) -> ClusterInfo:
    """A cluster of exactly `vc`'s quota in leaf cells (for the baselines): the nodes of its
    virtual cells at or above node level, cells below node level packed into nodes of the chain's
    node size (pinned cells left out, see `ClusterInfo`)."""
    spec = layout.virtual_clusters[vc]
    info = cluster_info(layout)
    nodes: list[SimNode] = []
    ids = itertools.count(1)
    sku = layout.sku_types

    def add(leaves: int, leaf: str) -> None:
        g = sku[leaf].gpu if leaf in sku else 1
        name = f"{vc}-n{next(ids)}"
        nodes.append(SimNode(name, "127.0.0.1", leaf, leaves, g))

    for v in spec.virtual_cells:
        if v.cell_number <= 0:
            continue
        last = v.cell_type.rsplit(".", 1)[-1]
        leaf = leaf_type_of(layout, last)
        node_type = _node_level_type(layout, last)
        if node_type is not None:
            for _ in range(v.cell_number * (leaf_count(layout, last) // leaf_count(layout, node_type))):
                add(leaf_count(layout, node_type), leaf)
            continue
        node_type, _, _ = _node_above(layout, v.cell_type, vc)
        size = leaf_count(layout, node_type)
        left = v.cell_number * leaf_count(layout, last)
        while left > 0:
            add(min(size, left), leaf)
            left -= size
    return ClusterInfo(nodes, {vc: info.quota.get(vc, 0)}, dict(layout.sku_types))


def _node_above(layout: Layout, cell_type: str, vc: str) -> tuple[str, int, str]:
    """For a VC cell path below node level: (node type, such cells per node, path from the node type)."""
    parts = cell_type.split(".")
    idx = next((i for i, p in enumerate(parts) if p in layout.cell_types and layout.cell_types[p].is_node_level), None)
    if idx is None:
        raise ValueError(f"virtualClusters.{vc}: {cell_type} has no node-level type above it")
    node_type = parts[idx]
    per_node = max(1, leaf_count(layout, node_type) // leaf_count(layout, parts[-1]))
    return node_type, per_node, ".".join(parts[idx:])


def _expand(layout: Layout, cell: PhysicalCellSpec, cell_type: str) -> list[PhysicalCellSpec]:
    """Spell out `cell`'s children down to the cells of `cell_type` and return those, in order."""
    if cell.cell_type == cell_type:
        return [cell]
    ct = layout.cell_types[cell.cell_type]
    if not cell.children:
        cell.children = [PhysicalCellSpec(ct.child_cell_type) for _ in range(ct.child_cell_number)]
    return [u for child in cell.children for u in _expand(layout, child, cell_type)]


def _named_cell(layout: Layout, cell_type: str, vc: str, ids: Iterator[int]) -> PhysicalCellSpec:
    """A physical cell of `cell_type` with every node-level descendant named `<vc>-n<id>`."""
    ct = layout.cell_types.get(cell_type)
    if ct is None or ct.is_node_level:
        return PhysicalCellSpec(cell_type, f"{vc}-n{next(ids)}")
    children = [_named_cell(layout, ct.child_cell_type, vc, ids) for _ in range(ct.child_cell_number)]
    return PhysicalCellSpec(cell_type, None, None, children)


# ------------------------------------------------------------------------------------------ requests
NEVER = 1 << 30  # cells of a task that fits nowhere


def cells_for_task(task: TaskRequest, sku: SkuType | None, sku_num: int | None = None) -> int:
    """Leaf cells a task needs: `skuNum` when the job gives one, else enough cells of `sku` to
    cover its GPUs, CPUs and memory (at least one)."""
    if sku_num:
        return int(sku_num)
    if sku is None:
        return max(1, task.gpu)
    if task.gpu > 0 and sku.gpu <= 0:
        return NEVER  # GPUs asked of a CPU-only leaf type
    need = 1
    for want, per in ((task.gpu, sku.gpu), (task.cpu, sku.cpu), (task.memory_mb, sku.memory_mb)):
        if want > 0 and per > 0:
            need = max(need, math.ceil(want / per))
    return need


def role_hived(req: GangRequest, role: str) -> dict:
    roles = (req.hived or {}).get("taskRoles") or {}
    return roles.get(role) or {}
