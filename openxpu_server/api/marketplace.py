"""REST: the marketplace (`{base_url}openxpu/api/v2/marketplace/...`); thin over MarketplaceService.

Every verb is `@web.authenticated` then `@authorized`; who may see or change an item is the
service's rule, decided on `self.caller` alone.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..services.marketplace import MarketplaceService
from .base import API, OpenXPUHandler

ITEM = r"(?P<item_id>[^/]+)"


class MarketplaceHandler(OpenXPUHandler):
    @property
    def marketplace(self) -> MarketplaceService:
        """The server's one service (built, and the built-in templates loaded, at start)."""
        return self.settings["openxpu_marketplace"]


class ItemsHandler(MarketplaceHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        args = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        self.write_json(self.marketplace.search(self.caller, args))

    @web.authenticated
    @authorized
    def post(self) -> None:
        self.write_json(self.marketplace.create(self.caller, self.json_body()), 201)


class ItemHandler(MarketplaceHandler):
    @web.authenticated
    @authorized
    def get(self, item_id: str) -> None:
        self.write_json(self.marketplace.get(self.caller, item_id))

    @web.authenticated
    @authorized
    def put(self, item_id: str) -> None:
        self.write_json(self.marketplace.update(self.caller, item_id, self.json_body()))

    @web.authenticated
    @authorized
    def delete(self, item_id: str) -> None:
        self.marketplace.delete(self.caller, item_id)
        self.write_json({"status": 200, "message": f"Deleted marketplace item {item_id}."})


class StarHandler(MarketplaceHandler):
    @web.authenticated
    @authorized
    def put(self, item_id: str) -> None:
        self.write_json(self.marketplace.star(self.caller, item_id, True))

    @web.authenticated
    @authorized
    def delete(self, item_id: str) -> None:
        self.write_json(self.marketplace.star(self.caller, item_id, False))


class UseHandler(MarketplaceHandler):
    @web.authenticated
    @authorized
    def post(self, item_id: str) -> None:
        self.write_json(self.marketplace.use(self.caller, item_id))


class TagsHandler(MarketplaceHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(self.marketplace.labels(self.caller, "tags"))


class CategoriesHandler(MarketplaceHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(self.marketplace.labels(self.caller, "categories"))


handlers = [
    (rf"{API}/marketplace/items", ItemsHandler),
    (rf"{API}/marketplace/items/{ITEM}", ItemHandler),
    (rf"{API}/marketplace/items/{ITEM}/star", StarHandler),
    (rf"{API}/marketplace/items/{ITEM}/use", UseHandler),
    (rf"{API}/marketplace/tags", TagsHandler),
    (rf"{API}/marketplace/categories", CategoriesHandler),
]
