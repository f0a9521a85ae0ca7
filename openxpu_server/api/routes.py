"""Every REST route of the extension, in the order tornado matches them.

Each API module (jobs, accounts, marketplace, ...) owns a `handlers` list; this is the one place that
puts them together, for the server and for the OpenAPI parity test.
"""

from __future__ import annotations

from typing import Any

from . import accounts, convert, marketplace, outputs, storage, vcs
from . import handlers as jobs


def api_routes() -> list[tuple[Any, ...]]:
    """The documented routes: one entry per path of openapi.yaml."""
    return [*jobs.default_handlers, *outputs.handlers, *marketplace.handlers, *accounts.handlers, *vcs.handlers,
            *storage.handlers, *convert.handlers]


def all_routes() -> list[tuple[Any, ...]]:
    """What the server installs: the API routes, then the catch-all JSON 404 (which must stay last)."""
    return [*api_routes(), *jobs.not_found_handlers]
