"""Virtual clusters: OpenPAI's VC objects from the scheduler's live state, SKU types, and VCs an
admin creates, resizes and deletes at runtime (kept in the store, applied to the running scheduler
through `ManagedScheduler.swap`, and re-applied over the layout file at every start)."""

from __future__ import annotations

import copy
import re
from typing import Any

from sqlalchemy import select

from ..errors import ForbiddenUserError, InvalidParametersError, NoVirtualClusterError, OpenXPUError
from ..scheduler.layout_model import Layout, VirtualCellSpec, VirtualClusterSpec
from ..scheduler.vc_admin import ManagedScheduler, UserLimits
from ..store.db import Store
from ..store.models_accounts import VcSetting
from .accounts import AccountService

VC_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def apply_settings(layout: Layout, store: Store) -> Layout:
    """The layout with the store's runtime VC changes applied (at start)."""
    layout = copy.deepcopy(layout)
    with store.session() as s:
        for row in s.scalars(select(VcSetting)):
            if row.deleted:
                layout.virtual_clusters.pop(row.name, None)
            elif row.virtual_cells is not None:
                cells = [VirtualCellSpec(c["cellType"], int(c["cellNumber"])) for c in row.virtual_cells]
                old = layout.virtual_clusters.get(row.name)
                layout.virtual_clusters[row.name] = VirtualClusterSpec(row.name, cells, old.pinned_cells if old else [])
    return layout


def stored_limits(store: Store) -> dict[str, UserLimits]:
    with store.session() as s:
        return {
            r.name: UserLimits(r.max_gpu_per_user, r.max_jobs_per_user)
            for r in s.scalars(select(VcSetting))
            if not r.deleted and (r.max_gpu_per_user is not None or r.max_jobs_per_user is not None)
        }


def _resources(leaves: dict[str, int], layout: Layout) -> dict[str, int]:
    cpu = mem = gpu = 0
    for leaf_type, n in leaves.items():
        sku = layout.sku_types.get(leaf_type)
        if sku is not None:
            cpu, mem, gpu = cpu + n * sku.cpu, mem + n * sku.memory_mb, gpu + n * sku.gpu
    return {"cpu": cpu, "memory": mem, "gpu": gpu, "vCores": cpu, "GPUs": gpu}


class VcService:
    def __init__(self, store: Store, scheduler: Any, accounts: AccountService, *, rebuild=None):
        self.store = store
        self.scheduler = scheduler
        self.accounts = accounts
        self.rebuild = rebuild  # Layout -> a new inner scheduler (None: VCs are read-only here)

    @property
    def layout(self) -> Layout | None:
        return getattr(self.scheduler, "layout", None)

    def _status(self) -> tuple[dict, dict]:
        if not hasattr(self.scheduler, "vc_status"):
            raise OpenXPUError("this scheduler has no virtual clusters (use the HiveD scheduler)",
                               code="NotImplementedError", status=501)
        return self.scheduler.vc_status(), self.scheduler.node_status()

    def _limits(self) -> dict[str, VcSetting]:
        with self.store.session() as s:
            return {r.name: r for r in s.scalars(select(VcSetting))}

    def list(self, *, nodes: bool = False) -> dict[str, dict]:
        status, node_status = self._status()
        layout = self.layout
        cluster: dict[str, int] = {}
        for nd in node_status.values():
            cluster[nd["leafType"]] = cluster.get(nd["leafType"], 0) + nd["leaves"]
        total = _resources(cluster, layout)
        basis = "gpu" if total["gpu"] else "cpu"
        settings = self._limits()
        out = {}
        for name, per in status.items():
            guaranteed = _resources({lt: d["guaranteed"] for lt, d in per.items()}, layout)
            used = _resources({lt: d["used"] + d["borrowed"] + d["opportunistic_used"] for lt, d in per.items()}, layout)
            row = settings.get(name)
            vc = {
                "capacity": round(100.0 * guaranteed[basis] / total[basis], 2) if total[basis] else 0.0,
                "usedCapacity": round(100.0 * used[basis] / total[basis], 2) if total[basis] else 0.0,
                "maxCapacity": 100.0 if getattr(self.scheduler, "borrow", False) else
                (round(100.0 * guaranteed[basis] / total[basis], 2) if total[basis] else 0.0),
                "dedicated": False,
                "resourcesUsed": used,
                "resourcesGuaranteed": guaranteed,
                "resourcesTotal": guaranteed,
                "maxGpuPerUser": row.max_gpu_per_user if row else None,
                "maxJobsPerUser": row.max_jobs_per_user if row else None,
                "description": row.description if row else "",
                "virtualCells": [{"cellType": c.cell_type, "cellNumber": c.cell_number}
                                 for c in layout.virtual_clusters[name].virtual_cells]
                if layout and name in layout.virtual_clusters else [],
            }
            if nodes:
                vc["nodeList"] = {
                    node: {
                        "gpuTotal": nd["leaves"] * layout.sku_types[nd["leafType"]].gpu,
                        "gpuUsed": nd["used"] * layout.sku_types[nd["leafType"]].gpu,
                        "gpuAvailable": nd["free"] * layout.sku_types[nd["leafType"]].gpu,
                        "vcLeaves": nd["vcs"].get(name, 0),
                        "healthy": nd["healthy"],
                    }
                    for node, nd in node_status.items()
                    if nd["vcs"].get(name)
                }
            out[name] = vc
        return out

    def get(self, name: str, *, nodes: bool = False) -> dict:
        vcs = self.list(nodes=nodes)
        if name not in vcs:
            raise NoVirtualClusterError(f"Virtual cluster {name} is not found.")
        return vcs[name]

    def sku_types(self, vc: str | None = None) -> dict[str, dict]:
        layout = self.layout
        if layout is None:
            return {}
        types = set(layout.sku_types)
        if vc is not None:
            status, _ = self._status()
            if vc not in status:
                raise NoVirtualClusterError(f"Virtual cluster {vc} is not found.")
            types &= set(status[vc])
        return {n: {"cpu": s.cpu, "memory": s.memory_mb, "gpu": s.gpu}
                for n, s in sorted(layout.sku_types.items()) if n in types}

    # ------------------------------------------------------------------ admin
    def put(self, name: str, body: dict) -> tuple[dict, bool]:
        """Create or change a VC: its virtual cells and/or per-user limits. Returns (VC, created)."""
        if not VC_RE.match(name):
            raise InvalidParametersError(f"vc: letters, digits and '_' only, got {name!r}")
        layout = self.layout
        if layout is None or self.rebuild is None or not isinstance(self.scheduler, ManagedScheduler):
            raise OpenXPUError("virtual clusters cannot be changed with this scheduler", code="NotImplementedError",
                               status=501)
        exists = name in layout.virtual_clusters
        cells = body.get("virtualCells")
        if cells is None and not exists:
            raise InvalidParametersError("virtualCells: required to create a VC ([{cellType, cellNumber}])")
        limits = {}
        for key in ("maxGpuPerUser", "maxJobsPerUser"):
            if key in body:
                v = body[key]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise InvalidParametersError(f"{key}: an integer >= 0, or null for no limit")
                limits[key] = v
        if "description" in body and not isinstance(body["description"], str):
            raise InvalidParametersError("description: must be a string")
        if cells is not None:
            if not isinstance(cells, list) or not all(
                isinstance(c, dict) and isinstance(c.get("cellType"), str)
                and isinstance(c.get("cellNumber"), int) and not isinstance(c.get("cellNumber"), bool)
                and c["cellNumber"] >= 0 for c in cells
            ):
                raise InvalidParametersError("virtualCells: a list of {cellType: string, cellNumber: integer >= 0}")
            new_layout = copy.deepcopy(layout)
            old = new_layout.virtual_clusters.get(name)
            new_layout.virtual_clusters[name] = VirtualClusterSpec(
                name, [VirtualCellSpec(c["cellType"], c["cellNumber"]) for c in cells], old.pinned_cells if old else [])
            self._swap(self._build(new_layout))  # first: a layout the running jobs do not fit is refused
        with self.store.session() as s:
            row = s.scalar(select(VcSetting).where(VcSetting.name == name))
            if row is None:
                row = VcSetting(name=name, deleted=False, description="")
                s.add(row)
            row.deleted = False
            if cells is not None:
                row.virtual_cells = [{"cellType": c["cellType"], "cellNumber": c["cellNumber"]} for c in cells]
            if "maxGpuPerUser" in limits:
                row.max_gpu_per_user = limits["maxGpuPerUser"]
            if "maxJobsPerUser" in limits:
                row.max_jobs_per_user = limits["maxJobsPerUser"]
            if "description" in body:
                row.description = body["description"]
            user_limits = UserLimits(row.max_gpu_per_user, row.max_jobs_per_user)
        self.scheduler.set_limits(name, user_limits)
        return self.get(name), not exists

    def delete(self, name: str) -> None:
        layout = self.layout
        if layout is None or name not in layout.virtual_clusters:
            raise NoVirtualClusterError(f"Virtual cluster {name} is not found.")
        if name == "default":
            raise ForbiddenUserError("vc: the default virtual cluster cannot be deleted")
        if self.rebuild is None or not isinstance(self.scheduler, ManagedScheduler):
            raise OpenXPUError("virtual clusters cannot be changed with this scheduler", code="NotImplementedError",
                               status=501)
        if any(req is not None and req.virtual_cluster == name for _, req in self.scheduler._held.values()):
            raise OpenXPUError(f"vc: {name} has running jobs; stop them first", code="RemoveRunningVcError",
                               status=409)
        new_layout = copy.deepcopy(layout)
        del new_layout.virtual_clusters[name]
        self._swap(self._build(new_layout))
        with self.store.session() as s:
            row = s.scalar(select(VcSetting).where(VcSetting.name == name))
            if row is None:
                row = VcSetting(name=name, description="")
                s.add(row)
            row.deleted, row.virtual_cells = True, None
            row.max_gpu_per_user = row.max_jobs_per_user = None
        self.scheduler.set_limits(name, None)
        self.accounts.forget_vc(name)

    def _build(self, layout: Layout):
        try:
            return self.rebuild(layout)
        except ValueError as e:  # the VC safety check: the VCs' cells must fit the physical cells
            raise InvalidParametersError(f"virtualCells: {e}") from None

    def _swap(self, new_inner) -> None:
        try:
            self.scheduler.swap(new_inner)
        except Exception as e:  # running gangs do not fit the new VC layout
            raise InvalidParametersError(f"virtualCells: the running jobs do not fit the new layout ({e})") from None
