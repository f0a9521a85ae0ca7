"""Cluster layouts the HiveD tests share (a module of its own, not imported from another test module)."""

from __future__ import annotations


def nodes_layout(vcs: dict, nodes: int = 2) -> dict:
    """8-GPU nodes (NVLink pairs, two sockets) without racks: chain GPU-NODE."""
    return {
        "physicalCluster": {
            "skuTypes": {"GPU": {"gpu": 1, "cpu": 4, "memory": 4096}},
            "cellTypes": {
                "GPU-PAIR": {"childCellType": "GPU", "childCellNumber": 2},
                "GPU-SOCKET": {"childCellType": "GPU-PAIR", "childCellNumber": 2},
                "GPU-NODE": {"childCellType": "GPU-SOCKET", "childCellNumber": 2, "isNodeLevel": True},
            },
            "physicalCells": [{"cellType": "GPU-NODE", "cellAddress": f"n{i + 1}"} for i in range(nodes)],
        },
        "virtualClusters": vcs,
    }
