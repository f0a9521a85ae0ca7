"""Load, validate and describe cluster layouts (the HiveD config dialect OpenXPU reads).

A layout is the HiveD scheduler config (`physicalCluster.{skuTypes, cellTypes, physicalCells}` and
`virtualClusters`) plus one OpenXPU extension, `nodes: {NODE: {hostIp}}`. HiveD itself validates almost
nothing at load time and panics later ("VC Safety Broken", unknown cell types, ...); here every rule is
checked up front so a bad file fails with one readable `LayoutError("path.to.field", "rule")` instead of
a scheduler that breaks on the first job. In particular the *VC safety* precondition (all virtual
clusters' cells fit onto the physical cells at the same time) is checked per chain and level.

The result is the plain data of `layout_model` with every implied physical cell filled in (HiveD's
defaulting: omitted children are instantiated, leaf addresses default to the device index within the
node), so consumers (the HiveD algorithm, the simulator, the virtual-clusters API) never have to repeat
the defaulting rules. Helpers answer the questions they all ask: which leaf type a cell type holds, its
level and chain, the nodes, the physical totals and each VC's guaranteed quota.

Pure except for reading the file in `load_layout` and probing the host in `detect_single_box_layout`.
"""

from __future__ import annotations

import copy
import os
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import yaml

from .layout_model import (
    CellType,
    Layout,
    NodeInfo,
    PhysicalCellSpec,
    SkuType,
    VirtualCellSpec,
    VirtualClusterSpec,
)

__all__ = [
    "CellInfo",
    "LayoutError",
    "cell_level",
    "chain_levels",
    "chain_of",
    "chains",
    "detect_single_box_layout",
    "iter_cells",
    "leaf_cell_number",
    "leaf_type_of",
    "load_layout",
    "node_level_type",
    "nodes_of_layout",
    "single_box_layout",
    "to_dict",
    "total_leaf_cells",
    "vc_quota",
]

VC_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
# Cell type names appear in dotted VC paths and "/"-joined addresses, so neither may contain those.
TYPE_NAME_RE = re.compile(r"^[^\s./]+$")
DEFAULT_HOST_IP = "127.0.0.1"

# Keys of a HiveD config that configure the HiveD *process* (K8s access, web server, bind retries):
# accepted so a real HiveD config file loads unchanged, and ignored because they mean nothing here.
HIVED_PROCESS_KEYS = frozenset(
    {
        "kubeApiServerAddress",
        "kubeConfigFilePath",
        "webServerAddress",
        "forcePodBindThreshold",
        "waitingPodSchedulingBlockMilliSec",
        "quotaExcludeVCs",
    }
)
# The per-leaf resource table went by three names over HiveD/OpenPAI history; all are read.
SKU_KEYS = ("skuTypes", "leafCellTypes", "gpuTypes")

_MEMORY_UNITS = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)\s*$")


class LayoutError(ValueError):
    """An invalid layout: `path` names the offending field (dotted, `[i]` for list items), `rule` what is wrong.

    One exception type for every problem (unreadable file, bad YAML, schema, topology, quota) so the
    caller (server start-up, the CLI, the admin API) reports it the same way.
    """

    def __init__(self, path: str, rule: str):
        self.path = path
        self.rule = rule
        super().__init__(f"{path}: {rule}" if path else rule)


# ------------------------------------------------------------------------------------------ reading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys: PyYAML keeps the last one silently, which would
    drop e.g. a whole virtual cluster defined twice."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: let the base constructor report it
            break
        if duplicate:
            raise LayoutError(f"line {key_node.start_mark.line + 1}", f"duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _looks_like_path(text: str) -> bool:
    """A one-line string naming an existing file or a .yaml/.yml/.json file is a path, else YAML text."""
    if "\n" in text or not text.strip():
        return False
    return os.path.exists(text) or text.strip().lower().endswith((".yaml", ".yml", ".json"))


def _read_source(source: str | os.PathLike | Mapping) -> Any:
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    origin = ""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_path(source)):
        origin = os.fspath(source)
        try:
            with open(origin, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise LayoutError(origin, f"cannot read the layout file: {e.strerror or e}") from e
    elif isinstance(source, str):
        text = source
    else:
        raise TypeError(f"layout source must be a path, YAML text or a dict, not {type(source).__name__}")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except LayoutError as e:
        raise LayoutError(f"{origin}: {e.path}" if origin else e.path, e.rule) from None
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e)
        raise LayoutError(origin or "layout", f"invalid YAML{where}: {problem}") from None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _mapping(
    value: Any,
    path: str,
    *,
    allowed: frozenset[str] | set[str] | None = None,
    required: tuple[str, ...] = (),
    optional: bool = False,
) -> dict:
    """A mapping with only `allowed` keys (None: any) and all `required` ones; None counts as {} if optional."""
    if value is None and optional:
        value = {}
    if not isinstance(value, Mapping):
        raise LayoutError(path, f"must be a mapping, not {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise LayoutError(path, f"keys must be strings, not {_kind(key)} {key!r}")
        if allowed is not None and key not in allowed:
            raise LayoutError(_join(path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in value or value[key] is None:
            raise LayoutError(_join(path, key), "required")
    return dict(value)


def _list(value: Any, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise LayoutError(path, f"must be a list, not {_kind(value)}")
    return value


def _int(value: Any, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LayoutError(path, f"must be an integer >= {minimum}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise LayoutError(path, "must be true or false")
    return value


def _name(value: Any, path: str, what: str = "a name") -> str:
    """A non-empty string without '/' (addresses are '/'-joined); YAML integers are taken as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or "/" in value:
        raise LayoutError(path, f"must be {what}: a non-empty string without '/'")
    return value


def _type_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not TYPE_NAME_RE.match(value):
        raise LayoutError(path, "must be a cell type name (non-empty, no spaces, '.' or '/')")
    return value


def _memory_mb(value: Any, path: str) -> int:
    """Memory per leaf cell in MB (MiB): an integer, or a K8s quantity such as 56Gi as OpenPAI wrote it."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _MEMORY_RE.match(value)
        if m:
            return int(float(m.group(1)) * _MEMORY_UNITS[m.group(2)]) // (1024 * 1024)
    raise LayoutError(path, "must be an integer >= 0 (MB) or a quantity with a unit such as 4096Mi or 56Gi")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "a mapping" if isinstance(value, Mapping) else type(value).__name__
    )


# ------------------------------------------------------------------------------------------ parsing


class _Parser:
    """One validation pass over a raw (YAML-shaped) layout; raises the first LayoutError it finds."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.cell_types: dict[str, CellType] = {}
        self.sku_types: dict[str, SkuType] = {}
        self.node_paths: dict[str, str] = {}  # node name -> path of its cell
        self.pinned_paths: dict[str, str] = {}  # pinnedCellId -> path of its cell
        self.leaf_addresses: dict[str, dict[str, str]] = {}  # node -> leaf address -> path

    def parse(self) -> Layout:
        if not isinstance(self.raw, Mapping):
            raise LayoutError(
                "layout", f"must be a mapping with physicalCluster and virtualClusters, not {_kind(self.raw)}"
            )
        top = _mapping(
            self.raw,
            "",
            allowed={"physicalCluster", "virtualClusters", "nodes"} | HIVED_PROCESS_KEYS,
            required=("physicalCluster",),
        )
        pc_path = "physicalCluster"
        pc = _mapping(
            top["physicalCluster"],
            pc_path,
            allowed={"cellTypes", "physicalCells", *SKU_KEYS},
            required=("cellTypes", "physicalCells"),
        )
        self._parse_cell_types(pc["cellTypes"], _join(pc_path, "cellTypes"))
        self._check_forest()
        self._parse_sku_types(pc)
        physical = self._parse_physical_cells(pc["physicalCells"], _join(pc_path, "physicalCells"))
        nodes = self._parse_nodes(top.get("nodes"))
        vcs = self._parse_virtual_clusters(top.get("virtualClusters"), physical)
        layout = Layout(
            sku_types=self.sku_types,
            cell_types=self.cell_types,
            physical_cells=physical,
            virtual_clusters=vcs,
            nodes=nodes,
        )
        _check_safety(layout)
        return layout

    # -------------------------------------------------------------- cell types
    def _parse_cell_types(self, raw: Any, path: str) -> None:
        specs = _mapping(raw, path)
        if not specs:
            raise LayoutError(path, "must define at least one cell type")
        for name, spec in specs.items():
            p = _join(path, name)
            _type_name(name, p)
            s = _mapping(
                spec,
                p,
                allowed={"childCellType", "childCellNumber", "isNodeLevel"},
                required=("childCellType", "childCellNumber"),
            )
            child = _type_name(s["childCellType"], _join(p, "childCellType"))
            number = _int(s["childCellNumber"], _join(p, "childCellNumber"), 1)
            node_level = _bool(s.get("isNodeLevel", False), _join(p, "isNodeLevel"))
            self.cell_types[name] = CellType(name, child, number, node_level)

    def _check_forest(self) -> None:
        """Every chain of child types must end in a leaf (no cycle) and hold exactly one node level."""
        types = self.cell_types
        for name in types:
            seen = [name]
            t = types[name].child_cell_type
            while t in types:
                if t in seen:
                    cycle = " -> ".join([*seen[seen.index(t) :], t])
                    raise LayoutError(
                        f"physicalCluster.cellTypes.{name}.childCellType",
                        f"cell types must form a forest, found the cycle {cycle}",
                    )
                seen.append(t)
                t = types[t].child_cell_type
        children = {ct.child_cell_type for ct in types.values()}
        for root in types:
            if root in children:
                continue
            chain = _descent(types, root)
            node_levels = [t for t in chain if t in types and types[t].is_node_level]
            if len(node_levels) != 1:
                found = "none" if not node_levels else ", ".join(node_levels)
                raise LayoutError(
                    f"physicalCluster.cellTypes.{root}",
                    f"the chain {' -> '.join(chain)} must have exactly one isNodeLevel level (found {found})",
                )

    def _parse_sku_types(self, pc: dict) -> None:
        given = [k for k in SKU_KEYS if k in pc]
        if len(given) > 1:
            raise LayoutError(
                f"physicalCluster.{given[1]}", f"give either {given[0]} or {given[1]}, not both"
            )
        key = given[0] if given else "skuTypes"
        path = f"physicalCluster.{key}"
        specs = _mapping(pc.get(key), path, optional=True)
        leaves = _leaf_types(self.cell_types)
        for name, spec in specs.items():
            p = _join(path, name)
            if name not in leaves:
                what = "a cell type with children" if name in self.cell_types else "not used by any cell type"
                raise LayoutError(p, f"skuTypes are keyed by leaf cell type; {name} is {what}")
            s = _mapping(spec, p, allowed={"gpu", "cpu", "memory"}, required=("cpu", "memory"))
            self.sku_types[name] = SkuType(
                name=name,
                gpu=_int(s.get("gpu", 1), _join(p, "gpu"), 0),
                cpu=_int(s["cpu"], _join(p, "cpu"), 0),
                memory_mb=_memory_mb(s["memory"], _join(p, "memory")),
            )
        for leaf in sorted(leaves):
            if leaf not in self.sku_types:
                raise LayoutError(
                    path, f"missing the leaf cell type {leaf} (every leaf type needs its gpu, cpu and memory)"
                )

    # -------------------------------------------------------------- physical cells
    def _parse_physical_cells(self, raw: Any, path: str) -> list[PhysicalCellSpec]:
        items = _list(raw, path)
        if not items:
            raise LayoutError(path, "must list at least one cell")
        cells = []
        for i, item in enumerate(items):
            p = _join(path, i)
            s = _mapping(item, p, required=("cellType",))
            cell_type = _type_name(s["cellType"], _join(p, "cellType"))
            if cell_type not in self.cell_types:
                rule = (
                    f"{cell_type} is a leaf cell type; a top cell must be at or above the node level"
                    if cell_type in self.sku_types
                    else f"unknown cell type {cell_type} (not defined in cellTypes)"
                )
                raise LayoutError(_join(p, "cellType"), rule)
            if not _has_node_level(self.cell_types, cell_type):
                raise LayoutError(
                    _join(p, "cellType"),
                    f"{cell_type} is below the node level; a top cell must be at or above isNodeLevel",
                )
            cells.append(self._build_cell(s, p, cell_type, i, node=None, pinned_above=None, top=True))
        return cells

    def _build_cell(
        self,
        raw: Any,
        path: str,
        cell_type: str,
        default_index: int,
        *,
        node: str | None,
        pinned_above: str | None,
        top: bool = False,
    ) -> PhysicalCellSpec:
        """One physical cell and its subtree, implied children filled in (HiveD's defaulting)."""
        s = _mapping(
            raw, path, allowed={"cellType", "cellAddress", "pinnedCellId", "cellChildren"}, optional=True
        )
        if not top and s.get("cellType") is not None and s["cellType"] != cell_type:
            raise LayoutError(
                _join(path, "cellType"),
                f"is {s['cellType']!r} but the parent's childCellType is {cell_type}",
            )
        ct = self.cell_types.get(cell_type)
        addr_path = _join(path, "cellAddress")
        raw_address = s.get("cellAddress")
        if ct is not None and ct.is_node_level:
            if raw_address is None:
                raise LayoutError(addr_path, "required at the node level (the node name)")
            address = _name(raw_address, addr_path, "the node name")
            if address in self.node_paths:
                raise LayoutError(
                    addr_path, f"duplicate node name {address} (also {self.node_paths[address]})"
                )
            self.node_paths[address] = path
            node = address
        elif ct is None:  # a leaf: its address is the device index within the node
            address = str(default_index) if raw_address is None else raw_address
            if isinstance(address, bool) or not re.fullmatch(r"\d+", str(address)):
                raise LayoutError(addr_path, "a leaf cell address must be its device index (an integer >= 0)")
            address = str(int(address))
            assert node is not None  # top cells are at or above the node level
            seen = self.leaf_addresses.setdefault(node, {})
            if address in seen:
                raise LayoutError(
                    addr_path, f"duplicate device index {address} in node {node} (also {seen[address]})"
                )
            seen[address] = path
        else:
            address = (
                str(default_index) if raw_address is None else _name(raw_address, addr_path, "an address")
            )

        pinned = None
        if s.get("pinnedCellId") is not None:
            pin_path = _join(path, "pinnedCellId")
            pinned = _name(s["pinnedCellId"], pin_path, "a pinned cell id")
            if pinned in self.pinned_paths:
                raise LayoutError(
                    pin_path, f"duplicate pinnedCellId {pinned} (also {self.pinned_paths[pinned]})"
                )
            if pinned_above is not None:
                raise LayoutError(pin_path, f"a pinned cell cannot lie inside the pinned cell {pinned_above}")
            self.pinned_paths[pinned] = path

        children_path = _join(path, "cellChildren")
        raw_children = _list(s.get("cellChildren"), children_path)
        cell = PhysicalCellSpec(cell_type=cell_type, address=address, pinned_cell_id=pinned)
        if ct is None:
            if raw_children:
                raise LayoutError(children_path, f"{cell_type} is a leaf cell type and has no children")
            return cell
        if len(raw_children) > ct.child_cell_number:
            raise LayoutError(
                children_path,
                f"has {len(raw_children)} children but {cell_type}.childCellNumber is {ct.child_cell_number}",
            )
        child_ct = self.cell_types.get(ct.child_cell_type)
        if len(raw_children) < ct.child_cell_number and child_ct is not None and child_ct.is_node_level:
            raise LayoutError(
                children_path,
                f"lists {len(raw_children)} of {ct.child_cell_number} {ct.child_cell_type} cells; node-level "
                "cells cannot be implied (each needs its node name as cellAddress)",
            )
        # HiveD numbering: children get parent_index * n + i; a node restarts at 0, so a leaf's default
        # address is its device index within the node.
        base = 0 if ct.is_node_level else default_index
        siblings: dict[str, str] = {}
        for i in range(ct.child_cell_number):
            child_raw = raw_children[i] if i < len(raw_children) else None
            child_path = _join(children_path, i)
            child = self._build_cell(
                child_raw,
                child_path,
                ct.child_cell_type,
                base * ct.child_cell_number + i,
                node=node,
                pinned_above=pinned or pinned_above,
            )
            if child.address in siblings and ct.child_cell_type in self.cell_types:
                raise LayoutError(
                    _join(child_path, "cellAddress"),
                    f"duplicate address {child.address} among the children of one cell (also {siblings[child.address]})",
                )
            siblings[child.address or ""] = child_path
            cell.children.append(child)
        return cell

    # -------------------------------------------------------------- nodes
    def _parse_nodes(self, raw: Any) -> dict[str, NodeInfo]:
        specs = _mapping(raw, "nodes", optional=True)
        nodes = {name: NodeInfo(name, DEFAULT_HOST_IP) for name in self.node_paths}
        for name, spec in specs.items():
            p = _join("nodes", name)
            if name not in self.node_paths:
                raise LayoutError(p, f"unknown node {name} (not a node-level cellAddress in physicalCells)")
            s = _mapping(spec, p, allowed={"hostIp"}, optional=True)
            host_ip = s.get("hostIp", DEFAULT_HOST_IP)
            if not isinstance(host_ip, str) or not host_ip.strip():
                raise LayoutError(
                    _join(p, "hostIp"), "must be a non-empty string (an IP address or host name)"
                )
            nodes[name] = NodeInfo(name, host_ip.strip())
        return nodes

    # -------------------------------------------------------------- virtual clusters
    def _parse_virtual_clusters(
        self, raw: Any, physical: list[PhysicalCellSpec]
    ) -> dict[str, VirtualClusterSpec]:
        specs = _mapping(raw, "virtualClusters", optional=True)
        top_types = list(dict.fromkeys(c.cell_type for c in physical))
        pinned_by: dict[str, str] = {}
        vcs: dict[str, VirtualClusterSpec] = {}
        for name, spec in specs.items():
            p = _join("virtualClusters", name)
            if not VC_NAME_RE.match(name):
                raise LayoutError(p, "a virtual cluster name must match ^[A-Za-z0-9_]+$")
            s = _mapping(spec, p, allowed={"virtualCells", "pinnedCells"}, optional=True)
            vc = VirtualClusterSpec(name=name)
            cells_path = _join(p, "virtualCells")
            for i, item in enumerate(_list(s.get("virtualCells"), cells_path)):
                ip = _join(cells_path, i)
                c = _mapping(
                    item, ip, allowed={"cellType", "cellNumber"}, required=("cellType", "cellNumber")
                )
                cell_type = self._vc_cell_path(c["cellType"], _join(ip, "cellType"), top_types)
                number = _int(c["cellNumber"], _join(ip, "cellNumber"), 0)
                vc.virtual_cells.append(VirtualCellSpec(cell_type, number))
            pins_path = _join(p, "pinnedCells")
            for i, item in enumerate(_list(s.get("pinnedCells"), pins_path)):
                ip = _join(pins_path, i)
                c = _mapping(item, ip, allowed={"pinnedCellId"}, required=("pinnedCellId",))
                pid_path = _join(ip, "pinnedCellId")
                pid = _name(c["pinnedCellId"], pid_path, "a pinned cell id")
                if pid not in self.pinned_paths:
                    raise LayoutError(pid_path, f"unknown pinnedCellId {pid} (no physical cell has it)")
                if pid in pinned_by:
                    other = pinned_by[pid]
                    rule = (
                        f"{pid} is listed twice"
                        if other == name
                        else f"{pid} is already pinned by the virtual cluster {other}"
                    )
                    raise LayoutError(pid_path, rule)
                pinned_by[pid] = name
                vc.pinned_cells.append(pid)
            vcs[name] = vc
        return vcs

    def _vc_cell_path(self, raw: Any, path: str, top_types: list[str]) -> str:
        """Check a dotted VC cell path: a chain (top type used in physicalCells), then child types."""
        if not isinstance(raw, str) or not raw:
            raise LayoutError(path, "must be a dotted cell type path such as RACK.NODE")
        parts = raw.split(".")
        if parts[0] not in top_types:
            raise LayoutError(
                path,
                f"{parts[0]} is not a top-level cell type used in physicalCells (chains: {', '.join(top_types)})",
            )
        for parent, child in pairwise(parts):
            expected = self.cell_types[parent].child_cell_type if parent in self.cell_types else None
            if child != expected:
                rule = (
                    f"{parent} is a leaf cell type and has no children"
                    if expected is None
                    else f"{child} is not the child type of {parent} (expected {expected})"
                )
                raise LayoutError(path, rule)
        return raw


def _descent(cell_types: Mapping[str, CellType], cell_type: str) -> list[str]:
    """cell_type, its child type, ... down to the leaf type (assumes no cycles)."""
    out = [cell_type]
    while out[-1] in cell_types:
        out.append(cell_types[out[-1]].child_cell_type)
    return out


def _has_node_level(cell_types: Mapping[str, CellType], cell_type: str) -> bool:
    return any(t in cell_types and cell_types[t].is_node_level for t in _descent(cell_types, cell_type))


def _leaf_types(cell_types: Mapping[str, CellType]) -> set[str]:
    return {ct.child_cell_type for ct in cell_types.values() if ct.child_cell_type not in cell_types}


# ------------------------------------------------------------------------------------------ safety


def _check_safety(layout: Layout) -> None:
    """HiveD's VC-safety precondition: all VCs' cells map one-to-one onto physical cells at once.

    Per chain, a level-k virtual cell needs one whole level-k physical cell that neither contains nor lies
    inside a pinned cell ("pin-free"); cells of higher levels use up their level-k descendants. Because
    all cells of a level are interchangeable buddies, a greedy top-down assignment succeeds iff, at every
    level k, the level-k cells demanded at level k or above fit into the pin-free level-k cells.
    """
    for chain in chains(layout):
        levels = chain_levels(layout, chain)  # index 0 = leaf (level 1)
        pin_free = [0] * len(levels)
        has_pins = False
        for info in iter_cells(layout):
            if info.chain != chain:
                continue
            if info.pinned_in is not None or info.contains_pin:
                has_pins = True
            else:
                pin_free[info.level - 1] += 1
        demand: dict[str, list[int]] = {}  # vc -> cells per level (index level-1)
        for vc in layout.virtual_clusters.values():
            for vcell in vc.virtual_cells:
                if vcell.cell_type.split(".")[0] != chain or vcell.cell_number == 0:
                    continue
                level = cell_level(layout, vcell.cell_type)
                demand.setdefault(vc.name, [0] * len(levels))[level - 1] += vcell.cell_number
        if not demand:
            continue
        for k in range(len(levels), 0, -1):  # top-down: report the highest level that does not fit
            asks = {}
            for vc_name, per_level in demand.items():
                n = sum(
                    per_level[j - 1]
                    * leaf_cell_number(layout, levels[j - 1])
                    // leaf_cell_number(layout, levels[k - 1])
                    for j in range(k, len(levels) + 1)
                )
                if n:
                    asks[vc_name] = n
            total = sum(asks.values())
            if total > pin_free[k - 1]:
                where = " outside pinned cells" if has_pins else ""
                detail = ", ".join(f"{v} {n}" for v, n in asks.items())
                raise LayoutError(
                    "virtualClusters",
                    f"quota exceeds the physical cluster in chain {chain} at level {levels[k - 1]}: "
                    f"VCs ask for {total} cells, {pin_free[k - 1]} exist{where} ({detail})",
                )


# ------------------------------------------------------------------------------------------ public API


def load_layout(source: str | os.PathLike | Mapping[str, Any]) -> Layout:
    """Load and validate a layout from a YAML file path, YAML text or an already parsed dict.

    Raises LayoutError (a ValueError) naming the first offending field and the rule it breaks. The
    returned layout has every physical cell instantiated (implied children filled in, default
    addresses set) and an entry in `nodes` for every node (host IP defaulting to 127.0.0.1).
    """
    return _Parser(_read_source(source)).parse()


def single_box_layout(
    *, node: str, host_ip: str = DEFAULT_HOST_IP, cpus: int, memory_mb: int, gpus: list[int]
) -> Layout:
    """The layout of one machine: one node cell owned entirely by the VC `default`.

    With GPUs the leaf type is "GPU" (one leaf per device, addressed by device index, each carrying its
    share of CPUs and memory); without, the leaf type is "CPU" (one leaf per core) so CPU-only boxes are
    scheduled by the same HiveD machinery.
    """
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise ValueError(f"cpus must be an integer >= 1, got {cpus!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 0:
        raise ValueError(f"memory_mb must be an integer >= 0, got {memory_mb!r}")
    gpus = list(gpus)
    if gpus:
        leaf, n = "GPU", len(gpus)
        sku = {"gpu": 1, "cpu": max(1, cpus // n), "memory": max(1, memory_mb // n)}
        addresses = [str(g) for g in gpus]
    else:
        leaf, n = "CPU", cpus
        sku = {"gpu": 0, "cpu": 1, "memory": memory_mb // cpus}
        addresses = [str(i) for i in range(cpus)]
    node_type = f"{leaf}-NODE"
    return load_layout(
        {
            "physicalCluster": {
                "skuTypes": {leaf: sku},
                "cellTypes": {node_type: {"childCellType": leaf, "childCellNumber": n, "isNodeLevel": True}},
                "physicalCells": [
                    {
                        "cellType": node_type,
                        "cellAddress": node,
                        "cellChildren": [{"cellAddress": a} for a in addresses],
                    }
                ],
            },
            "virtualClusters": {"default": {"virtualCells": [{"cellType": node_type, "cellNumber": 1}]}},
            "nodes": {node: {"hostIp": host_ip}},
        }
    )


def detect_single_box_layout(
    cpus: int | None = None,
    memory_mb: int | None = None,
    gpus: int | list[int] | None = None,
    host_ip: str = DEFAULT_HOST_IP,
    node: str | None = None,
) -> Layout:
    """`single_box_layout` for this machine; given values win over detection (as in `single_box_nodes`)."""
    import psutil

    from ..runtime.gpus import resolve_gpus

    return single_box_layout(
        node=node or socket.gethostname(),
        host_ip=host_ip,
        cpus=cpus if cpus is not None else (os.cpu_count() or 1),
        memory_mb=memory_mb if memory_mb is not None else psutil.virtual_memory().total // (1024 * 1024),
        gpus=resolve_gpus(gpus),
    )


def _cell_types_of(layout: Layout | Mapping[str, CellType]) -> Mapping[str, CellType]:
    return layout.cell_types if isinstance(layout, Layout) else layout


def _last(cell_type: str) -> str:
    return cell_type.rsplit(".", 1)[-1]


def _check_known(layout: Layout | Mapping[str, CellType], name: str) -> None:
    cell_types = _cell_types_of(layout)
    if name not in cell_types and name not in _leaf_types(cell_types):
        raise KeyError(f"unknown cell type {name}")


def leaf_type_of(layout: Layout | Mapping[str, CellType], cell_type: str) -> str:
    """The leaf cell type (the SKU) inside `cell_type` (a type name or a dotted VC path)."""
    name = _last(cell_type)
    _check_known(layout, name)
    return _descent(_cell_types_of(layout), name)[-1]


def cell_level(layout: Layout | Mapping[str, CellType], cell_type: str) -> int:
    """HiveD's level of a cell type (or dotted VC path): 1 for a leaf, k+1 for the parent of level k."""
    name = _last(cell_type)
    _check_known(layout, name)
    return len(_descent(_cell_types_of(layout), name))


def leaf_cell_number(layout: Layout | Mapping[str, CellType], cell_type: str) -> int:
    """How many leaf cells (devices) one cell of this type (or dotted VC path) holds."""
    name = _last(cell_type)
    _check_known(layout, name)
    cell_types = _cell_types_of(layout)
    n = 1
    for t in _descent(cell_types, name)[:-1]:
        n *= cell_types[t].child_cell_number
    return n


def chains(layout: Layout) -> list[str]:
    """The chains (HiveD: the top cell types used in physicalCells), in order of first use."""
    return list(dict.fromkeys(c.cell_type for c in layout.physical_cells))


def chain_of(layout: Layout, cell_type: str) -> str:
    """The chain of a dotted VC path (its first component) or of a plain cell type.

    A plain type that lies in several chains (e.g. a NODE type used both under RACK cells and as a top
    cell of its own) is ambiguous: use a dotted path then.
    """
    if "." in cell_type:
        chain = cell_type.split(".")[0]
        if chain not in chains(layout):
            raise KeyError(f"{chain} is not a chain of this layout")
        return chain
    found = [c for c in chains(layout) if cell_type in chain_levels(layout, c)]
    if not found:
        raise KeyError(f"cell type {cell_type} is in no chain of this layout")
    if len(found) > 1:
        raise ValueError(
            f"cell type {cell_type} is in several chains ({', '.join(found)}); give a dotted path"
        )
    return found[0]


def chain_levels(layout: Layout | Mapping[str, CellType], chain: str) -> list[str]:
    """The cell types of a chain from the leaf (index 0 = level 1) up to the chain's top type."""
    return list(reversed(_descent(_cell_types_of(layout), chain)))


def node_level_type(layout: Layout | Mapping[str, CellType], chain: str) -> str:
    """The isNodeLevel cell type of a chain."""
    cell_types = _cell_types_of(layout)
    return next(t for t in _descent(cell_types, chain) if t in cell_types and cell_types[t].is_node_level)


@dataclass(frozen=True)
class CellInfo:
    """A physical cell with what its position implies (see `iter_cells`)."""

    cell: PhysicalCellSpec
    chain: str
    level: int
    address: str  # HiveD physical address: the '/'-joined addresses from the top cell down
    node: str | None  # the node the cell lies in (None above the node level)
    pinned_in: str | None  # pinnedCellId of the cell itself or of the pinned cell it lies inside
    contains_pin: bool  # the cell or a descendant is pinned


def iter_cells(layout: Layout) -> Iterator[CellInfo]:
    """Every physical cell, depth-first in layout order (a parent before its children)."""

    def walk(
        cell: PhysicalCellSpec, chain: str, prefix: str, node: str | None, pinned: str | None
    ) -> Iterator[CellInfo]:
        ct = layout.cell_types.get(cell.cell_type)
        address = f"{prefix}/{cell.address}" if prefix else str(cell.address)
        if ct is not None and ct.is_node_level:
            node = cell.address
        pinned_in = cell.pinned_cell_id or pinned
        yield CellInfo(
            cell=cell,
            chain=chain,
            level=cell_level(layout, cell.cell_type),
            address=address,
            node=node,
            pinned_in=pinned_in,
            contains_pin=_contains_pin(cell),
        )
        for child in cell.children:
            yield from walk(child, chain, address, node, pinned_in)

    for top in layout.physical_cells:
        yield from walk(top, top.cell_type, "", None, None)


def _contains_pin(cell: PhysicalCellSpec) -> bool:
    return cell.pinned_cell_id is not None or any(_contains_pin(c) for c in cell.children)


def nodes_of_layout(layout: Layout) -> list[str]:
    """The node names (node-level cellAddress values) in layout order."""
    return [
        info.cell.address
        for info in iter_cells(layout)
        if info.cell.cell_type in layout.cell_types
        and layout.cell_types[info.cell.cell_type].is_node_level
        and info.cell.address is not None
    ]


def total_leaf_cells(layout: Layout) -> dict[str, int]:
    """Physical leaf cells (devices) per leaf type."""
    out: dict[str, int] = {}
    for info in iter_cells(layout):
        if info.level == 1:
            out[info.cell.cell_type] = out.get(info.cell.cell_type, 0) + 1
    return out


def vc_quota(layout: Layout) -> dict[str, dict[str, int]]:
    """Guaranteed leaf cells per VC per leaf type: its virtual cells plus its pinned cells."""
    pinned = {
        info.cell.pinned_cell_id: info.cell.cell_type
        for info in iter_cells(layout)
        if info.cell.pinned_cell_id is not None
    }
    out: dict[str, dict[str, int]] = {}
    for name, vc in layout.virtual_clusters.items():
        quota: dict[str, int] = {}
        for vcell in vc.virtual_cells:
            leaf = leaf_type_of(layout, vcell.cell_type)
            quota[leaf] = quota.get(leaf, 0) + vcell.cell_number * leaf_cell_number(layout, vcell.cell_type)
        for pid in vc.pinned_cells:
            cell_type = pinned[pid]
            leaf = leaf_type_of(layout, cell_type)
            quota[leaf] = quota.get(leaf, 0) + leaf_cell_number(layout, cell_type)
        out[name] = {k: v for k, v in quota.items() if v}
    return out


def to_dict(layout: Layout) -> dict[str, Any]:
    """The layout back in its YAML shape; `load_layout(to_dict(x)) == x`.

    Children that HiveD's defaulting would imply exactly (default addresses, no pins) are omitted, so
    a loaded file comes back about as short as it was written.
    """

    def is_implied(cell: PhysicalCellSpec, default_index: int) -> bool:
        ct = layout.cell_types.get(cell.cell_type)
        if cell.pinned_cell_id is not None or cell.address != str(default_index):
            return False
        if ct is None:
            return True
        if ct.is_node_level:
            return False
        return all(
            is_implied(c, default_index * ct.child_cell_number + i) for i, c in enumerate(cell.children)
        )

    def cell_dict(cell: PhysicalCellSpec, default_index: int, top: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if top:
            out["cellType"] = cell.cell_type
        ct = layout.cell_types.get(cell.cell_type)
        if cell.address is not None and (
            ct is None or ct.is_node_level or cell.address != str(default_index)
        ):
            out["cellAddress"] = cell.address
        if cell.pinned_cell_id is not None:
            out["pinnedCellId"] = cell.pinned_cell_id
        if ct is not None and cell.children:
            base = 0 if ct.is_node_level else default_index
            indices = [base * ct.child_cell_number + i for i in range(len(cell.children))]
            if len(cell.children) != ct.child_cell_number or not all(
                is_implied(c, j) for c, j in zip(cell.children, indices, strict=True)
            ):
                out["cellChildren"] = [
                    cell_dict(c, j, False) for c, j in zip(cell.children, indices, strict=True)
                ]
        return out

    cell_types: dict[str, Any] = {}
    for name, ct in layout.cell_types.items():
        spec: dict[str, Any] = {"childCellType": ct.child_cell_type, "childCellNumber": ct.child_cell_number}
        if ct.is_node_level:
            spec["isNodeLevel"] = True
        cell_types[name] = spec
    vcs: dict[str, Any] = {}
    for name, vc in layout.virtual_clusters.items():
        spec = {}
        if vc.virtual_cells:
            spec["virtualCells"] = [
                {"cellType": c.cell_type, "cellNumber": c.cell_number} for c in vc.virtual_cells
            ]
        if vc.pinned_cells:
            spec["pinnedCells"] = [{"pinnedCellId": p} for p in vc.pinned_cells]
        vcs[name] = spec
    return {
        "physicalCluster": {
            "skuTypes": {
                name: {"gpu": s.gpu, "cpu": s.cpu, "memory": s.memory_mb}
                for name, s in layout.sku_types.items()
            },
            "cellTypes": cell_types,
            "physicalCells": [cell_dict(c, i, True) for i, c in enumerate(layout.physical_cells)],
        },
        "virtualClusters": vcs,
        "nodes": {name: {"hostIp": n.host_ip} for name, n in layout.nodes.items()},
    }
