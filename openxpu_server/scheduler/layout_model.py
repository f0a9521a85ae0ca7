"""The cluster layout: a HiveD-compatible description of physical cells and virtual clusters.

Plain data, no I/O. `scheduler/layout.py` loads and validates it from YAML (the HiveD config keys:
`physicalCluster.{skuTypes, cellTypes, physicalCells}` and `virtualClusters`); the HiveD scheduler,
the simulator and the virtual-clusters API read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SkuType:
    """Resources of one leaf cell (e.g. one GPU with its share of CPUs and memory).

    A CPU-only box uses a leaf SKU with gpu=0 (one CPU core and its memory share per leaf cell).
    """

    name: str
    gpu: int
    cpu: int
    memory_mb: int


@dataclass(frozen=True)
class CellType:
    name: str
    child_cell_type: str  # the type of its children (a leaf type name when the children are leaves)
    child_cell_number: int
    is_node_level: bool = False


@dataclass
class PhysicalCellSpec:
    """One physical cell as written in `physicalCells` (children may be omitted: they are implied)."""

    cell_type: str
    address: str | None = None  # node-level: the node name; below: index in parent (GPU index at leaf)
    pinned_cell_id: str | None = None
    children: list[PhysicalCellSpec] = field(default_factory=list)


@dataclass(frozen=True)
class VirtualCellSpec:
    cell_type: str  # dotted path from a top-level type, e.g. "A100-RACK.A100-NODE"
    cell_number: int


@dataclass
class VirtualClusterSpec:
    name: str
    virtual_cells: list[VirtualCellSpec] = field(default_factory=list)
    pinned_cells: list[str] = field(default_factory=list)  # pinnedCellId values


@dataclass
class NodeInfo:
    """OpenXPU extension (`nodes:` in the layout): how to reach a node; defaults to 127.0.0.1."""

    name: str
    host_ip: str = "127.0.0.1"


@dataclass
class Layout:
    sku_types: dict[str, SkuType]  # keyed by leaf cell type name
    cell_types: dict[str, CellType]
    physical_cells: list[PhysicalCellSpec]
    virtual_clusters: dict[str, VirtualClusterSpec]
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
