"""Cluster layouts: the HiveD config dialect is loaded, completed (implied cells) and validated up front."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from openxpu_server.scheduler.layout import (
    LayoutError,
    cell_level,
    chain_levels,
    chain_of,
    chains,
    detect_single_box_layout,
    iter_cells,
    leaf_cell_number,
    leaf_type_of,
    load_layout,
    node_level_type,
    nodes_of_layout,
    single_box_layout,
    to_dict,
    total_leaf_cells,
    vc_quota,
)
from openxpu_server.scheduler.layout_model import NodeInfo, SkuType

LAYOUTS = Path(__file__).resolve().parents[2] / "cluster" / "layouts"
SHIPPED = sorted(LAYOUTS.glob("*.yaml"))

# The example of the reference (§1.12): a rack of 4 nodes, NVLink pairs, sockets, one pinned node.
BASE_YAML = """
physicalCluster:
  skuTypes:
    A100: {gpu: 1, cpu: 8, memory: 80000}
  cellTypes:
    A100-PAIR: {childCellType: A100, childCellNumber: 2}
    A100-QUAD: {childCellType: A100-PAIR, childCellNumber: 2}
    A100-NODE: {childCellType: A100-QUAD, childCellNumber: 2, isNodeLevel: true}
    A100-RACK: {childCellType: A100-NODE, childCellNumber: 4}
  physicalCells:
  - cellType: A100-RACK
    cellChildren: [{cellAddress: gpu-n1}, {cellAddress: gpu-n2},
                   {cellAddress: gpu-n3, pinnedCellId: vision-reserved}, {cellAddress: gpu-n4}]
virtualClusters:
  nlp:    {virtualCells: [{cellType: A100-RACK.A100-NODE, cellNumber: 2}]}
  vision: {virtualCells: [{cellType: A100-RACK.A100-NODE.A100-QUAD, cellNumber: 2}],
           pinnedCells: [{pinnedCellId: vision-reserved}]}
"""


def base() -> dict:
    return yaml.safe_load(BASE_YAML)


# ---------------------------------------------------------------------------------- shipped layouts


def test_all_four_layouts_are_shipped():
    assert {p.name for p in SHIPPED} >= {
        "single-box.yaml",
        "classroom.yaml",
        "gpu-pod.yaml",
        "heterogeneous.yaml",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_layout_loads_and_round_trips(path):
    layout = load_layout(path)  # a Path
    assert load_layout(str(path)) == layout  # a str path
    assert load_layout(path.read_text()) == layout  # YAML text
    assert load_layout(to_dict(layout)) == layout
    assert load_layout(yaml.safe_dump(to_dict(layout))) == layout
    assert nodes_of_layout(layout) and set(layout.nodes) == set(nodes_of_layout(layout))
    assert layout.virtual_clusters


def test_shipped_layout_numbers():
    single = load_layout(LAYOUTS / "single-box.yaml")
    assert total_leaf_cells(single) == {"GPU": 8} and vc_quota(single) == {"default": {"GPU": 8}}

    classroom = load_layout(LAYOUTS / "classroom.yaml")
    assert vc_quota(classroom) == {"course101": {"GPU": 4}, "course102": {"GPU": 2}, "course103": {"GPU": 2}}

    pod = load_layout(LAYOUTS / "gpu-pod.yaml")
    assert nodes_of_layout(pod) == ["gpu-n1", "gpu-n2", "gpu-n3", "gpu-n4"]
    assert total_leaf_cells(pod) == {"A100": 32}
    assert vc_quota(pod) == {"nlp": {"A100": 8}, "vision": {"A100": 16}, "research": {"A100": 4}}
    assert pod.nodes["gpu-n3"] == NodeInfo("gpu-n3", "127.0.0.13")

    het = load_layout(LAYOUTS / "heterogeneous.yaml")
    assert chains(het) == ["A100-POOL", "V100-NODE"]
    assert total_leaf_cells(het) == {"A100": 16, "V100": 12}
    assert vc_quota(het) == {"training": {"A100": 8, "V100": 8}, "dev": {"A100": 6, "V100": 4}}
    assert het.sku_types["V100"] == SkuType("V100", 1, 6, 45 * 1024)  # "45Gi" read as MB


def test_readme_example_loads():
    text = (LAYOUTS / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert example is not None
    layout = load_layout(example.group(1))
    assert vc_quota(layout) == {"team1": {"A100": 4}, "team2": {"A100": 12}}


# ---------------------------------------------------------------------------------- the model


def test_base_example_numbers_and_helpers():
    layout = load_layout(base())
    assert total_leaf_cells(layout) == {"A100": 32}
    assert vc_quota(layout) == {"nlp": {"A100": 16}, "vision": {"A100": 16}}  # 2 nodes; 2 quads + pinned node
    assert chains(layout) == ["A100-RACK"]
    assert chain_levels(layout, "A100-RACK") == ["A100", "A100-PAIR", "A100-QUAD", "A100-NODE", "A100-RACK"]
    assert node_level_type(layout, "A100-RACK") == "A100-NODE"
    assert leaf_type_of(layout, "A100-RACK.A100-NODE") == "A100"
    assert leaf_type_of(layout.cell_types, "A100") == "A100"
    assert cell_level(layout, "A100") == 1 and cell_level(layout, "A100-RACK.A100-NODE.A100-QUAD") == 3
    assert leaf_cell_number(layout, "A100-NODE") == 8 and leaf_cell_number(layout, "A100-RACK") == 32
    assert chain_of(layout, "A100-RACK.A100-NODE") == "A100-RACK"
    assert chain_of(layout, "A100-PAIR") == "A100-RACK"
    with pytest.raises(KeyError):
        leaf_type_of(layout, "H100")
    assert layout.nodes["gpu-n1"] == NodeInfo("gpu-n1", "127.0.0.1")  # every node gets an entry


def test_implied_children_follow_hived_addressing():
    layout = load_layout(base())
    rack = layout.physical_cells[0]
    assert rack.address == "0"  # a top cell above node level defaults to its index
    node = rack.children[1]
    assert node.address == "gpu-n2" and [q.address for q in node.children] == ["0", "1"]
    assert [p.address for p in node.children[1].children] == ["2", "3"]  # index within the node
    leaves = [info for info in iter_cells(layout) if info.node == "gpu-n2" and info.level == 1]
    assert [i.cell.address for i in leaves] == [str(i) for i in range(8)]  # = GPU index within node
    assert leaves[5].address == "0/gpu-n2/1/2/5"
    assert all(i.cell.cell_type == "A100" and not i.cell.children for i in leaves)
    pinned = [i for i in iter_cells(layout) if i.pinned_in == "vision-reserved"]
    assert len(pinned) == 1 + 2 + 4 + 8 and pinned[0].cell.pinned_cell_id == "vision-reserved"


def test_partial_children_are_completed_and_explicit_devices_kept():
    raw = {
        "physicalCluster": {
            "skuTypes": {"GPU": {"cpu": 4, "memory": 1000}},
            "cellTypes": {
                "PAIR": {"childCellType": "GPU", "childCellNumber": 2},
                "NODE": {"childCellType": "PAIR", "childCellNumber": 2, "isNodeLevel": True},
            },
            "physicalCells": [
                {
                    "cellType": "NODE",
                    "cellAddress": "n1",
                    "cellChildren": [{"cellChildren": [{"cellAddress": 6}, {"cellAddress": "7"}]}],
                }
            ],
        }
    }
    layout = load_layout(raw)
    node = layout.physical_cells[0]
    assert [[leaf.address for leaf in pair.children] for pair in node.children] == [["6", "7"], ["2", "3"]]
    assert layout.sku_types["GPU"].gpu == 1  # gpu defaults to one device per leaf
    assert layout.virtual_clusters == {}
    again = to_dict(layout)
    assert again["physicalCluster"]["physicalCells"][0]["cellChildren"][0]["cellChildren"] == [
        {"cellAddress": "6"},
        {"cellAddress": "7"},
    ]
    assert load_layout(again) == layout


def test_round_trip_keeps_pins_nodes_and_compacts_implied_cells():
    raw = base()
    raw["nodes"] = {"gpu-n4": {"hostIp": "127.1.2.3"}}
    layout = load_layout(raw)
    out = to_dict(layout)
    children = out["physicalCluster"]["physicalCells"][0]["cellChildren"]
    assert children[2] == {"cellAddress": "gpu-n3", "pinnedCellId": "vision-reserved"}  # GPUs implied again
    assert out["nodes"]["gpu-n4"] == {"hostIp": "127.1.2.3"}
    assert load_layout(out) == layout


def test_hived_process_keys_and_old_sku_name_are_accepted():
    raw = base()
    raw["webServerAddress"] = ":30096"
    raw["waitingPodSchedulingBlockMilliSec"] = 50
    raw["physicalCluster"]["gpuTypes"] = raw["physicalCluster"].pop("skuTypes")
    raw["physicalCluster"]["gpuTypes"]["A100"]["memory"] = "80Gi"
    layout = load_layout(raw)
    assert layout.sku_types["A100"].memory_mb == 80 * 1024


def test_vc_without_cells_and_zero_cell_number_are_allowed():
    raw = base()
    raw["virtualClusters"]["idle"] = None
    raw["virtualClusters"]["nlp"]["virtualCells"][0]["cellNumber"] = 0
    layout = load_layout(raw)
    assert vc_quota(layout)["idle"] == {} and vc_quota(layout)["nlp"] == {}


# ---------------------------------------------------------------------------------- invalid layouts


def _set(path: str, value):
    """A mutation setting the dotted `path` (list indices as numbers) of the base layout."""

    def mutate(d: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in keys[:-1]:
            d = d[k]
        if value is _DELETE:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value

    return mutate


_DELETE = object()
PC = "physicalCluster"
RACK_CHILDREN = "physicalCluster.physicalCells.0.cellChildren"


def _second_rack_with_pin(d: dict) -> None:
    d[PC]["physicalCells"].append(
        {
            "cellType": "A100-RACK",
            "pinnedCellId": "vision-reserved",
            "cellChildren": [{"cellAddress": f"x{i}"} for i in range(4)],
        }
    )


def _two_racks(d: dict) -> None:
    d[PC]["physicalCells"].append(
        {"cellType": "A100-RACK", "cellChildren": [{"cellAddress": f"b{i}"} for i in range(4)]}
    )


INVALID = [
    # (id, mutation, path, rule fragment)
    ("unknown top key", _set("physicalClusterz", {}), "physicalClusterz", "unknown key"),
    (
        "missing physicalCells",
        _set("physicalCluster.physicalCells", _DELETE),
        "physicalCluster.physicalCells",
        "required",
    ),
    (
        "childCellNumber not int",
        _set("physicalCluster.cellTypes.A100-NODE.childCellNumber", "two"),
        "physicalCluster.cellTypes.A100-NODE.childCellNumber",
        "must be an integer >= 1",
    ),
    (
        "childCellNumber zero",
        _set("physicalCluster.cellTypes.A100-PAIR.childCellNumber", 0),
        "physicalCluster.cellTypes.A100-PAIR.childCellNumber",
        "must be an integer >= 1",
    ),
    (
        "isNodeLevel not bool",
        _set("physicalCluster.cellTypes.A100-NODE.isNodeLevel", "yes"),
        "physicalCluster.cellTypes.A100-NODE.isNodeLevel",
        "must be true or false",
    ),
    (
        "unknown cell type key",
        _set("physicalCluster.cellTypes.A100-PAIR.childCount", 2),
        "physicalCluster.cellTypes.A100-PAIR.childCount",
        "unknown key",
    ),
    (
        "cycle",
        _set("physicalCluster.cellTypes.A100-PAIR.childCellType", "A100-RACK"),
        "physicalCluster.cellTypes.A100-PAIR.childCellType",
        "cycle A100-PAIR -> A100-RACK -> A100-NODE -> A100-QUAD -> A100-PAIR",
    ),
    (
        "no node level",
        _set("physicalCluster.cellTypes.A100-NODE.isNodeLevel", False),
        "physicalCluster.cellTypes.A100-RACK",
        "exactly one isNodeLevel level (found none)",
    ),
    (
        "two node levels",
        _set("physicalCluster.cellTypes.A100-QUAD.isNodeLevel", True),
        "physicalCluster.cellTypes.A100-RACK",
        "exactly one isNodeLevel level (found A100-NODE, A100-QUAD)",
    ),
    (
        "missing sku",
        _set("physicalCluster.skuTypes", {}),
        "physicalCluster.skuTypes",
        "missing the leaf cell type A100",
    ),
    (
        "sku for a non-leaf",
        _set("physicalCluster.skuTypes.A100-PAIR", {"cpu": 1, "memory": 1}),
        "physicalCluster.skuTypes.A100-PAIR",
        "keyed by leaf cell type",
    ),
    (
        "sku memory without unit",
        _set("physicalCluster.skuTypes.A100.memory", "80"),
        "physicalCluster.skuTypes.A100.memory",
        "MB",
    ),
    (
        "unknown top cell type",
        _set("physicalCluster.physicalCells.0.cellType", "H100-RACK"),
        "physicalCluster.physicalCells[0].cellType",
        "unknown cell type H100-RACK",
    ),
    (
        "top cell below node level",
        _set("physicalCluster.physicalCells.0", {"cellType": "A100-QUAD"}),
        "physicalCluster.physicalCells[0].cellType",
        "below the node level",
    ),
    (
        "node without address",
        _set(f"{RACK_CHILDREN}.1", {}),
        "physicalCluster.physicalCells[0].cellChildren[1].cellAddress",
        "required at the node level",
    ),
    (
        "implied node cells",
        _set(RACK_CHILDREN, [{"cellAddress": "gpu-n1"}]),
        "physicalCluster.physicalCells[0].cellChildren",
        "node-level cells cannot be implied",
    ),
    (
        "duplicate node name",
        _set(f"{RACK_CHILDREN}.3.cellAddress", "gpu-n1"),
        "physicalCluster.physicalCells[0].cellChildren[3].cellAddress",
        "duplicate node name gpu-n1",
    ),
    (
        "too many children",
        _set(f"{RACK_CHILDREN}.0.cellChildren", [{}, {}, {}]),
        "physicalCluster.physicalCells[0].cellChildren[0].cellChildren",
        "has 3 children but A100-NODE.childCellNumber is 2",
    ),
    (
        "inconsistent child type",
        _set(f"{RACK_CHILDREN}.0.cellChildren", [{"cellType": "A100-PAIR"}]),
        "physicalCluster.physicalCells[0].cellChildren[0].cellChildren[0].cellType",
        "parent's childCellType is A100-QUAD",
    ),
    (
        "duplicate sibling address",
        _set(f"{RACK_CHILDREN}.0.cellChildren", [{"cellAddress": "s"}, {"cellAddress": "s"}]),
        "physicalCluster.physicalCells[0].cellChildren[0].cellChildren[1].cellAddress",
        "duplicate address s among the children",
    ),
    (
        "leaf address not a device index",
        _set(
            f"{RACK_CHILDREN}.0.cellChildren",
            [{"cellChildren": [{"cellChildren": [{"cellAddress": "gpu0"}]}]}],
        ),
        "physicalCluster.physicalCells[0].cellChildren[0].cellChildren[0].cellChildren[0].cellChildren[0].cellAddress",
        "device index",
    ),
    (
        "duplicate device index",
        _set(f"{RACK_CHILDREN}.0.cellChildren", [{"cellChildren": [{"cellChildren": [{"cellAddress": 1}]}]}]),
        "physicalCluster.physicalCells[0].cellChildren[0].cellChildren[0].cellChildren[0].cellChildren[1].cellAddress",
        "duplicate device index 1 in node gpu-n1",
    ),
    (
        "leaf with children",
        _set(
            f"{RACK_CHILDREN}.0.cellChildren",
            [{"cellChildren": [{"cellChildren": [{"cellChildren": [{}]}]}]}],
        ),
        "physicalCluster.physicalCells[0].cellChildren[0].cellChildren[0].cellChildren[0].cellChildren[0].cellChildren",
        "leaf cell type and has no children",
    ),
    (
        "duplicate pinnedCellId",
        _second_rack_with_pin,
        "physicalCluster.physicalCells[1].pinnedCellId",
        "duplicate pinnedCellId",
    ),
    (
        "nested pinned cells",
        _set(f"{RACK_CHILDREN}.2.cellChildren", [{"pinnedCellId": "inner"}]),
        "physicalCluster.physicalCells[0].cellChildren[2].cellChildren[0].pinnedCellId",
        "inside the pinned cell vision-reserved",
    ),
    (
        "unknown node in nodes",
        _set("nodes", {"gpu-n9": {"hostIp": "127.0.0.9"}}),
        "nodes.gpu-n9",
        "unknown node gpu-n9",
    ),
    ("bad VC name", _set("virtualClusters.nl-p", {}), "virtualClusters.nl-p", "^[A-Za-z0-9_]+$"),
    (
        "VC path not starting at a chain",
        _set("virtualClusters.nlp.virtualCells.0.cellType", "A100-NODE"),
        "virtualClusters.nlp.virtualCells[0].cellType",
        "A100-NODE is not a top-level cell type used in physicalCells",
    ),
    (
        "VC path skipping a level",
        _set("virtualClusters.nlp.virtualCells.0.cellType", "A100-RACK.A100-QUAD"),
        "virtualClusters.nlp.virtualCells[0].cellType",
        "A100-QUAD is not the child type of A100-RACK (expected A100-NODE)",
    ),
    (
        "VC cellNumber negative",
        _set("virtualClusters.nlp.virtualCells.0.cellNumber", -1),
        "virtualClusters.nlp.virtualCells[0].cellNumber",
        "must be an integer >= 0",
    ),
    (
        "unknown pinned cell",
        _set("virtualClusters.vision.pinnedCells.0.pinnedCellId", "nope"),
        "virtualClusters.vision.pinnedCells[0].pinnedCellId",
        "unknown pinnedCellId nope",
    ),
    (
        "pinned by two VCs",
        _set("virtualClusters.nlp.pinnedCells", [{"pinnedCellId": "vision-reserved"}]),
        "virtualClusters.vision.pinnedCells[0].pinnedCellId",
        "already pinned by the virtual cluster nlp",
    ),
    (
        "safety at node level",
        _set("virtualClusters.vision.virtualCells.0", {"cellType": "A100-RACK.A100-NODE", "cellNumber": 2}),
        "virtualClusters",
        "quota exceeds the physical cluster in chain A100-RACK at level A100-NODE: "
        "VCs ask for 4 cells, 3 exist outside pinned cells (nlp 2, vision 2)",
    ),
    (
        "safety at a lower level",
        _set("virtualClusters.vision.virtualCells.0.cellNumber", 3),
        "virtualClusters",
        "at level A100-QUAD: VCs ask for 7 cells, 6 exist outside pinned cells (nlp 4, vision 3)",
    ),
]


@pytest.mark.parametrize(("mutation", "path", "rule"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_layout_names_path_and_rule(mutation, path, rule):
    raw = base()
    mutation(raw)
    with pytest.raises(LayoutError) as e:
        load_layout(raw)
    assert e.value.path == path
    assert rule in e.value.rule
    assert str(e.value) == f"{path}: {e.value.rule}"
    assert isinstance(e.value, ValueError)


def test_safety_without_pins_matches_the_documented_message():
    raw = base()
    raw[PC]["physicalCells"][0]["cellChildren"][2].pop("pinnedCellId")
    raw["virtualClusters"]["vision"] = {
        "virtualCells": [{"cellType": "A100-RACK.A100-NODE", "cellNumber": 4}]
    }
    with pytest.raises(LayoutError) as e:
        load_layout(raw)
    assert str(e.value) == (
        "virtualClusters: quota exceeds the physical cluster in chain A100-RACK at level A100-NODE: "
        "VCs ask for 6 cells, 4 exist (nlp 2, vision 4)"
    )


def test_safety_is_per_chain_and_exact():
    raw = base()
    _two_racks(raw)  # a second rack of the same chain: 8 nodes, one pinned
    raw["virtualClusters"]["nlp"]["virtualCells"] = [
        {"cellType": "A100-RACK", "cellNumber": 1},  # the unpinned rack whole
        {"cellType": "A100-RACK.A100-NODE", "cellNumber": 2},
    ]
    # Left: 1 unpinned node of the pinned rack = 2 quads, exactly vision's 2 quads.
    layout = load_layout(raw)
    assert vc_quota(layout)["nlp"] == {"A100": 48}
    raw["virtualClusters"]["research"] = {
        "virtualCells": [{"cellType": "A100-RACK.A100-NODE.A100-QUAD.A100-PAIR.A100", "cellNumber": 1}]
    }
    with pytest.raises(
        LayoutError, match="at level A100: VCs ask for 57 cells, 56 exist outside pinned cells"
    ):
        load_layout(raw)


def test_source_errors():
    with pytest.raises(LayoutError) as e:
        load_layout("physicalCluster: [unclosed")
    assert e.value.path == "layout" and "invalid YAML" in e.value.rule
    with pytest.raises(LayoutError) as e:
        load_layout("virtualClusters: {a: {}}\nvirtualClusters: {b: {}}\n")
    assert e.value.path == "line 2" and "duplicate key 'virtualClusters'" in e.value.rule
    with pytest.raises(LayoutError) as e:
        load_layout("/nonexistent/layout.yaml")
    assert e.value.path == "/nonexistent/layout.yaml" and "cannot read" in e.value.rule
    with pytest.raises(LayoutError) as e:
        load_layout("- just a list")
    assert e.value.path == "layout" and "must be a mapping" in e.value.rule


def test_load_does_not_mutate_the_given_dict():
    raw = base()
    before = copy.deepcopy(raw)
    load_layout(raw)
    assert raw == before


# ---------------------------------------------------------------------------------- single box


def test_single_box_layout_with_gpus():
    layout = single_box_layout(node="box", host_ip="127.0.0.5", cpus=32, memory_mb=256_000, gpus=[0, 2, 3])
    assert layout.sku_types == {"GPU": SkuType("GPU", gpu=1, cpu=10, memory_mb=85_333)}
    node = layout.physical_cells[0]
    assert node.address == "box" and [c.address for c in node.children] == ["0", "2", "3"]
    assert layout.cell_types["GPU-NODE"].is_node_level
    assert nodes_of_layout(layout) == ["box"] and layout.nodes["box"].host_ip == "127.0.0.5"
    assert total_leaf_cells(layout) == {"GPU": 3} and vc_quota(layout) == {"default": {"GPU": 3}}
    assert load_layout(to_dict(layout)) == layout


def test_single_box_layout_cpu_only():
    layout = single_box_layout(node="laptop", cpus=4, memory_mb=16_000, gpus=[])
    assert layout.sku_types == {"CPU": SkuType("CPU", gpu=0, cpu=1, memory_mb=4000)}
    assert [c.address for c in layout.physical_cells[0].children] == ["0", "1", "2", "3"]
    assert leaf_type_of(layout, "CPU-NODE") == "CPU"
    assert vc_quota(layout) == {"default": {"CPU": 4}}
    assert layout.nodes["laptop"].host_ip == "127.0.0.1"
    with pytest.raises(ValueError):
        single_box_layout(node="x", cpus=0, memory_mb=1, gpus=[])


def test_detect_single_box_layout_uses_given_values():
    layout = detect_single_box_layout(cpus=8, memory_mb=8192, gpus=2, node="h")
    assert total_leaf_cells(layout) == {"GPU": 2} and layout.sku_types["GPU"].cpu == 4
    detected = detect_single_box_layout(gpus=0)  # CPU-only, real CPU count and memory
    assert set(total_leaf_cells(detected)) == {"CPU"}
