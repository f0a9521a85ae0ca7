"""Storages (OpenPAI REST v2 paths) and a files API inside the storages a user may use."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import API, OpenXPUHandler


class _StorageBase(OpenXPUHandler):
    @property
    def storages(self):
        return self.settings["openxpu_storages"]


class StoragesHandler(_StorageBase):
    @web.authenticated
    @authorized
    def get(self) -> None:
        default = (self.get_query_argument("default", "") or "").lower() == "true"
        self.write_json(self.storages.list(self.caller, default_only=default))

    @web.authenticated
    @authorized
    def post(self) -> None:
        self.write_json(self.storages.create(self.json_body()), 201)


class StorageHandler(_StorageBase):
    @web.authenticated
    @authorized
    def get(self, storage: str) -> None:
        self.write_json(self.storages.get(self.caller, storage))

    @web.authenticated
    @authorized
    def delete(self, storage: str) -> None:
        self.storages.delete(storage)
        self.write_json({"status": 200, "message": f"Storage {storage} is removed."})


class StorageFilesHandler(_StorageBase):
    """`?path=` relative to the caller's view of the storage: a directory lists, a file downloads."""

    @web.authenticated
    @authorized
    def get(self, storage: str) -> None:
        kind, result = self.storages.files(self.caller, storage, self.get_query_argument("path", ""))
        if kind == "dir":
            self.write_json(result)
            return
        self.set_header("Content-Disposition", f'attachment; filename="{result.name}"')
        with open(result, "rb") as f:
            self.finish(f.read(), set_content_type="application/octet-stream")

    @web.authenticated
    @authorized
    def put(self, storage: str) -> None:
        path = self.get_query_argument("path", "")
        self.write_json(self.storages.upload(self.caller, storage, path, self.request.body or b""), 201)


handlers = [
    (rf"{API}/storages", StoragesHandler),
    (rf"{API}/storages/(?P<storage>[^/]+)", StorageHandler),
    (rf"{API}/storages/(?P<storage>[^/]+)/files", StorageFilesHandler),
]
