"""Virtual clusters and SKU types (OpenPAI REST v2 paths), from the scheduler's live state."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import API, OpenXPUHandler


class _VcBase(OpenXPUHandler):
    @property
    def vcs(self):
        return self.settings["openxpu_vcs"]

    def _nodes(self) -> bool:
        return self.get_query_argument("nodes", None) is not None


class VirtualClustersHandler(_VcBase):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(self.vcs.list(nodes=self._nodes()))


class VirtualClusterHandler(_VcBase):
    @web.authenticated
    @authorized
    def get(self, vc: str) -> None:
        self.write_json(self.vcs.get(vc, nodes=self._nodes()))

    @web.authenticated
    @authorized
    def put(self, vc: str) -> None:
        data, created = self.vcs.put(vc, self.json_body())
        self.write_json(data, 201 if created else 200)

    @web.authenticated
    @authorized
    def delete(self, vc: str) -> None:
        self.vcs.delete(vc)
        self.write_json({"status": 200, "message": f"Virtual cluster {vc} is removed."})


class SkuTypesHandler(_VcBase):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(self.vcs.sku_types(self.get_query_argument("vc", None)))


handlers = [
    (rf"{API}/virtual-clusters", VirtualClustersHandler),
    (rf"{API}/virtual-clusters/(?P<vc>[^/]+)", VirtualClusterHandler),
    (rf"{API}/cluster/sku-types", SkuTypesHandler),
]
