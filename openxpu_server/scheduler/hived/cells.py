"""Physical cells and nodes built from a `Layout` (HiveD §1.2-1.3), with the counters the scheduler keeps.

Every physical cell becomes one `Cell`, leaves included, indexed by a global integer. The scheduler's
hot path never walks trees: each leaf carries the tuple of its ancestors up to its node (`upath`) and
up to the top of its chain (`apath`), so a leaf changing state updates a handful of counters.

Cell addresses (what `TaskPlacement.cells` holds and `restore` reads back) are HiveD-style paths
that start at the node: `<node>/<address below the node>/.../<leaf address>`, e.g. `gpu-n1/1/2/5` =
node gpu-n1, socket 1, NVLink pair 2, device 5. Each component is the cell's `cellAddress`, which
the layout loader defaults to the cell's index among the node's cells of that level (the leaf's is
its device index). A node whose leaves are its direct children gives `box/3`. Cells above the node
level are named by their '/'-joined addresses from the top cell (e.g. `rack1`).
"""

from __future__ import annotations

from ..layout_model import Layout, PhysicalCellSpec, SkuType
from .buckets import Buckets
from .buddy import Chain


class Cell:
    """One physical cell; leaf-only fields are None/0 on inner cells."""

    __slots__ = (
        "idx",
        "chain",
        "level",
        "address",
        "parent",
        "children",
        "node",  # the Node it lies in (None above the node level)
        "nodes",  # Nodes under it (cells at or above the node level)
        "leaves",  # leaf cells under it (cells at or below the node level)
        "nleaves",
        "free",  # leaves below with no user and no reservation (kept for cells at/below node level)
        "opp",  # leaves below used by opportunistic gangs (all levels; "dirty" free cells)
        "nbad",  # unhealthy nodes below (a cell is bad when any descendant is)
        "in_free",  # in its chain's buddy free list
        "fl_h",  # counted as healthy in the free list
        "fl_c",  # filed as clean (healthy, no opportunistic use) in the free list
        "owner",  # the Pool this cell is bound to (top cell of a binding only)
        "doomed",  # bound to a VC because healthy cells ran short (HiveD "doomed bad cell")
        "vc_use",  # bound cell: leaves used by the owner VC's guaranteed gangs or reserved
        "pinned",  # pinnedCellId of this cell (or of the pinned cell it lies in)
        "ukey",  # unit filing: count it is filed under in its pool's Buckets (-1: not filed)
        "upool",  # unit filing: the Pool whose unit it is (None: not a unit)
        "gprio",  # unit: priority -> its leaves used by guaranteed gangs (preemption upper bounds)
        "ndying",  # unit: its leaves used by gangs being preempted
        "nres",  # unit: its reserved leaves
        "pkeys",  # unit: priority threshold -> count it is filed under in its pool's preemption index
        # leaves only
        "device",
        "user",  # gang key using it
        "prio",  # that gang's priority (-2 when free)
        "reserved",  # gang key it is reserved for (preemption or anti-starvation hold)
        "pool",  # Pool of the bound cell it lies in
        "bound",  # the bound cell it lies in
        "unit",  # the placement unit it lies in (node or sub-node bound cell)
        "upath",  # (self, parent, ..., node cell)
        "apath",  # (self, parent, ..., top cell)
    )

    def __init__(self, idx: int, chain: Chain, level: int, address: str, parent: Cell | None):
        self.idx = idx
        self.chain = chain
        self.level = level
        self.address = address
        self.parent = parent
        self.children: list[Cell] = []
        self.node: Node | None = None
        self.nodes: list[Node] = []
        self.leaves: list[Cell] = []
        self.nleaves = 0
        self.free = 0
        self.opp = 0
        self.nbad = 0
        self.in_free = False
        self.fl_h = False
        self.fl_c = False
        self.owner = None
        self.doomed = False
        self.vc_use = 0
        self.pinned: str | None = None
        self.ukey = -1
        self.upool = None
        self.gprio: dict[int, int] = {}
        self.ndying = 0
        self.nres = 0
        self.pkeys: dict[int, int] = {}
        self.device = -1
        self.user: str | None = None
        self.prio = -2
        self.reserved: str | None = None
        self.pool = None
        self.bound: Cell | None = None
        self.unit: Cell | None = None
        self.upath: tuple[Cell, ...] = ()
        self.apath: tuple[Cell, ...] = ()

    def __repr__(self) -> str:
        return f"Cell({self.chain.name} L{self.level} {self.address})"


class Node:
    """A node (one node-level cell) with the counters of the opportunistic view."""

    __slots__ = (
        "name",
        "host_ip",
        "cell",
        "chain",
        "leaves",
        "subcells",  # cells strictly below the node cell (for health bookkeeping)
        "healthy",
        "idle",  # leaves free and not pinned (what an opportunistic task may take)
        "nbound",  # leaves inside bound cells (VC, doomed or pinned)
        "npinned",
        "okey",  # count it is filed under in the chain's opportunistic Buckets (-1: not filed)
        "ocls",  # which of the chain's two opportunistic Buckets (0: no bound leaf, 1: some)
        "is_gpu",
    )

    def __init__(self, name: str, host_ip: str, cell: Cell, chain: Chain):
        self.name = name
        self.host_ip = host_ip
        self.cell = cell
        self.chain = chain
        self.leaves: list[Cell] = []
        self.subcells: list[Cell] = []
        self.healthy = True
        self.idle = 0
        self.nbound = 0
        self.npinned = 0
        self.okey = -1
        self.ocls = 0
        self.is_gpu = chain.sku.gpu > 0

    def __repr__(self) -> str:
        return f"Node({self.name})"


class Topology:
    """All cells, nodes and chains of a layout, plus the address index used by `restore`."""

    def __init__(self, layout: Layout):
        self.cells: list[Cell] = []
        self.chains: dict[str, Chain] = {}
        self.nodes: dict[str, Node] = {}
        self.by_address: dict[str, Cell] = {}  # leaf addresses and node names
        self.pinned: dict[str, Cell] = {}  # pinnedCellId -> cell
        self._layout = layout
        for spec in layout.physical_cells:
            chain = self.chains.get(spec.cell_type)
            if chain is None:
                chain = self.chains[spec.cell_type] = self._make_chain(spec.cell_type)
            top_index = len(chain.tops)
            top = self._build(spec, chain, chain.top, None, None, top_index, "")
            chain.tops.append(top)
        for chain in self.chains.values():
            size = chain.size[chain.node_level]
            chain.opp_buckets = (Buckets(size), Buckets(size))

    # ------------------------------------------------------------------ building
    def _make_chain(self, top_type: str) -> Chain:
        cell_types = self._layout.cell_types
        if top_type not in cell_types:
            raise ValueError(f"physicalCells: {top_type} is not a cell type with children")
        descent = [top_type]
        while descent[-1] in cell_types:
            descent.append(cell_types[descent[-1]].child_cell_type)
            if len(descent) > 64:
                raise ValueError(f"cellTypes: the chain of {top_type} does not end in a leaf type")
        types: list[str] = [""] + list(reversed(descent))  # index = level
        child_num = [0, 0] + [cell_types[types[lv]].child_cell_number for lv in range(2, len(types))]
        node_levels = [lv for lv in range(2, len(types)) if cell_types[types[lv]].is_node_level]
        if len(node_levels) != 1:
            raise ValueError(f"cellTypes: the chain {top_type} needs exactly one isNodeLevel level")
        leaf = types[1]
        sku = self._layout.sku_types.get(leaf) or SkuType(leaf, 1, 0, 0)
        return Chain(top_type, types, child_num, node_levels[0], sku)

    def _build(
        self,
        spec: PhysicalCellSpec | None,
        chain: Chain,
        level: int,
        parent: Cell | None,
        node: Node | None,
        default_index: int,
        prefix: str,
    ) -> Cell:
        raw_addr = spec.address if spec is not None else None
        if level == chain.node_level:
            if raw_addr is None:
                raw_addr = f"{chain.name}-{len(chain.nodes)}"
            name = str(raw_addr)
            if name in self.nodes:
                raise ValueError(f"physicalCells: duplicate node name {name}")
            address = name
        elif level > chain.node_level:
            seg = str(raw_addr) if raw_addr is not None else str(default_index)
            address = f"{prefix}/{seg}" if prefix else seg
        else:
            seg = str(raw_addr) if raw_addr is not None else str(default_index)
            address = f"{prefix}/{seg}"
        cell = Cell(len(self.cells), chain, level, address, parent)
        self.cells.append(cell)
        chain.cells_at[level].append(cell)
        if spec is not None and spec.pinned_cell_id:
            if spec.pinned_cell_id in self.pinned:
                raise ValueError(f"physicalCells: duplicate pinnedCellId {spec.pinned_cell_id}")
            self.pinned[spec.pinned_cell_id] = cell
        if parent is not None and parent.pinned:
            cell.pinned = parent.pinned
        elif spec is not None and spec.pinned_cell_id:
            cell.pinned = spec.pinned_cell_id
        if level == chain.node_level:
            host = self._layout.nodes.get(address)
            node = Node(address, host.host_ip if host else "127.0.0.1", cell, chain)
            self.nodes[address] = node
            self.by_address[address] = cell
            chain.nodes.append(node)
        if node is not None:
            cell.node = node
            if cell is not node.cell:
                node.subcells.append(cell)
        if level == 1:
            cell.device = int(raw_addr) if raw_addr is not None and str(raw_addr).isdigit() else default_index
            cell.nleaves = 1
            cell.free = 1
            cell.leaves = [cell]
            if node is None:
                raise ValueError(f"physicalCells: leaf {address} lies in no node")
            node.leaves.append(cell)
            if address in self.by_address:
                raise ValueError(f"physicalCells: duplicate leaf address {address}")
            self.by_address[address] = cell
            up = [cell]
            c = parent
            while c is not None and c.level <= chain.node_level:
                up.append(c)
                c = c.parent
            cell.upath = tuple(up)
            a = [cell]
            c = parent
            while c is not None:
                a.append(c)
                c = c.parent
            cell.apath = tuple(a)
            node.idle += 0 if cell.pinned else 1
            node.npinned += 1 if cell.pinned else 0
            return cell
        specs = list(spec.children) if spec is not None else []
        n = chain.child_num[level]
        if len(specs) > n:
            raise ValueError(f"physicalCells: {address} has {len(specs)} children, its type allows {n}")
        # HiveD numbering below a node: children get parent_index * n + i, restarting at the node.
        base = 0 if level == chain.node_level else default_index
        for i in range(n):
            child_spec = specs[i] if i < len(specs) else None
            if child_spec is None and level - 1 == chain.node_level:
                raise ValueError(f"physicalCells: {address} lists {len(specs)} of {n} nodes")
            child_default = base * n + i if level <= chain.node_level else i
            child = self._build(child_spec, chain, level - 1, cell, node, child_default, address)
            cell.children.append(child)
        cell.nleaves = sum(c.nleaves for c in cell.children)
        if level <= chain.node_level:
            cell.leaves = [lf for c in cell.children for lf in c.leaves]
            cell.free = cell.nleaves
        if level >= chain.node_level:
            cell.nodes = (
                [node] if level == chain.node_level else [nd for c in cell.children for nd in c.nodes]
            )
        return cell
