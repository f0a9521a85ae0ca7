"""What the simulator reads from a layout: nodes, quotas, pinned cells, private clusters."""

from __future__ import annotations

from pathlib import Path

import pytest

from openxpu_server.scheduler.layout import load_layout
from openxpu_server.sim.cluster import (
    cluster_info,
    max_task_leaves,
    private_cluster,
    private_layout,
    quota_by_leaf_type,
    uniform_layout,
)

LAYOUTS = Path(__file__).resolve().parents[2] / "cluster" / "layouts"


def test_gpu_pod_leaves_out_the_pinned_node():
    layout = load_layout(LAYOUTS / "gpu-pod.yaml")
    info = cluster_info(layout)
    assert [(n.name, n.leaves) for n in info.nodes] == [("gpu-n1", 8), ("gpu-n2", 8), ("gpu-n3", 8)]
    assert all(n.host_ip == layout.nodes[n.name].host_ip for n in info.nodes)
    assert info.quota == {"nlp": 8, "vision": 8, "research": 4}
    assert info.pinned == {"nlp": 0, "vision": 8, "research": 0}
    assert info.total_gpus == 24 and info.main_leaf_type == "A100"


def test_private_clusters_hold_exactly_the_quota():
    layout = load_layout(LAYOUTS / "gpu-pod.yaml")
    for vc, quota in {"nlp": 8, "vision": 8, "research": 4}.items():
        hived = cluster_info(private_layout(layout, vc))
        assert list(hived.quota) == [vc] and hived.total_leaves == quota
        assert private_cluster(layout, vc).total_leaves == quota
    # research owns 2 NVLink pairs: one node whose other 2 pairs are pinned to nobody
    research = private_layout(layout, "research")
    node = cluster_info(research).nodes[0]
    assert (node.name, node.leaves, node.pinned_leaves) == ("research-n1", 4, 4)
    assert research.virtual_clusters["research"].pinned_cells == []
    assert [(n.name, n.leaves) for n in private_cluster(layout, "research").nodes] == [("research-n1", 4)]


def test_heterogeneous_quota_and_task_sizes():
    layout = load_layout(LAYOUTS / "heterogeneous.yaml")
    assert quota_by_leaf_type(layout, "dev") == {"A100": 6, "V100": 4}
    assert max_task_leaves(layout, "dev") == 2 and max_task_leaves(layout, "training") == 8
    assert cluster_info(layout).leaf_types == ["A100", "V100"]


def test_uniform_layout():
    layout = uniform_layout(3, 4, {"a": 2, "b": 1})
    info = cluster_info(layout)
    assert [n.name for n in info.nodes] == ["node0", "node1", "node2"] and info.quota == {"a": 8, "b": 4}
    with pytest.raises(ValueError, match="the VCs own 4 nodes but the cluster has 3"):
        uniform_layout(3, 4, {"a": 4})
