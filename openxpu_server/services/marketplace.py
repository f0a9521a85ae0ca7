"""Marketplace business rules: job templates people share, find, star and use.

OpenPAI's openpaimarketplace item (openpai.md §5) on our store: name, author, tags, categories,
summary, markdown description, protocol YAML and, new here, an optional notebook. Visibility is
public, private (the author) or shared with groups; admins see and edit everything. An item the
caller may not see answers 404, as if it did not exist; one they see but do not own answers 403
on change. Built-in templates (`examples/marketplace/*/template.yaml`) are loaded once per store.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml
from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session

from ..errors import ForbiddenUserError, InvalidParametersError, InvalidProtocolError, OpenXPUError
from ..protocol import parse_job
from ..store.db import Store, now_ms
from ..store.models_marketplace import (
    MarketplaceCategory,
    MarketplaceGroup,
    MarketplaceItem,
    MarketplaceSeed,
    MarketplaceStar,
    MarketplaceTag,
)

BUILTIN_AUTHOR = "openxpu"
log = logging.getLogger("openxpu.marketplace")
VISIBILITIES = ("public", "private", "groups")
ORDER_FIELDS = {
    "name": MarketplaceItem.name,
    "useCount": MarketplaceItem.use_count,
    "starCount": MarketplaceItem.star_count,
    "createdTime": MarketplaceItem.created_time,
    "updatedTime": MarketplaceItem.updated_time,
}
FIELDS = {"name", "summary", "description", "protocol", "notebook", "tags", "categories", "visibility", "groups"}
MAX_LABELS = 32


class NoItemError(OpenXPUError):
    status = 404
    code = "NoMarketplaceItemError"


class ConflictItemError(OpenXPUError):
    status = 409
    code = "ConflictMarketplaceItemError"


class CallerLike(Protocol):
    """What the service needs to know about the caller (api.base.Caller fits)."""

    username: str
    groups: frozenset[str]
    admin: bool


def default_templates_dir() -> Path | None:
    """OPENXPU_MARKETPLACE_DIR, else the repository's examples/marketplace, else the installed copy."""
    env = os.environ.get("OPENXPU_MARKETPLACE_DIR")
    if env is not None:
        return Path(env) if env else None
    for candidate in (
        Path(__file__).resolve().parents[2] / "examples" / "marketplace",
        Path(sys.prefix) / "share" / "openxpu" / "marketplace",
    ):
        if candidate.is_dir():
            return candidate
    return None


# ---------------------------------------------------------------------------- validation
def _text(body: Mapping[str, Any], field: str, *, max_len: int, required: bool = False, pattern: str | None = None) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidParametersError(f"{field}: required")
        return None
    if not isinstance(value, str):
        raise InvalidParametersError(f"{field}: must be a string")
    if required and not value.strip():
        raise InvalidParametersError(f"{field}: must not be empty")
    if len(value) > max_len:
        raise InvalidParametersError(f"{field}: at most {max_len} characters")
    return value


def _labels(body: Mapping[str, Any], field: str, max_len: int = 64) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_LABELS:
        raise InvalidParametersError(f"{field}: must be a list of at most {MAX_LABELS} strings")
    out: list[str] = []
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v.strip() or len(v) > max_len or "," in v:
            raise InvalidParametersError(f"{field}[{i}]: a non-empty string of at most {max_len} characters without commas")
        if v.strip() not in out:
            out.append(v.strip())
    return out


def _protocol(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidParametersError("protocol: required, the job's protocol v2 YAML")
    try:
        parse_job(text)
    except InvalidProtocolError as e:
        raise InvalidProtocolError(f"protocol.{e.field}" if e.field else "protocol", e.rule) from None
    return text


def _notebook(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("cells"), list):
        raise InvalidParametersError("notebook: must be a notebook (an object with a cells list)")
    if len(json.dumps(value)) > 1024 * 1024:
        raise InvalidParametersError("notebook: at most 1 MB")
    return value


def validate(body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The fields of a create (`partial=False`) or update body, checked; 400 names the field."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidParametersError(f"{unknown[0]}: unknown field (allowed: {', '.join(sorted(FIELDS))})")
    out: dict[str, Any] = {}
    if not partial or "name" in body:
        out["name"] = _text(body, "name", max_len=255, required=True).strip()
    for field, max_len in (("summary", 1024), ("description", 64 * 1024)):
        if field in body:
            out[field] = _text(body, field, max_len=max_len) or ""
    if not partial or "protocol" in body:
        out["protocol"] = _protocol(body.get("protocol"))
    if "notebook" in body:
        out["notebook"] = _notebook(body["notebook"])
    for field in ("tags", "categories"):
        if field in body:
            out[field] = _labels(body, field) or []
    if "groups" in body:
        out["groups"] = _labels(body, "groups", 255) or []
    if "visibility" in body:
        if body["visibility"] not in VISIBILITIES:
            raise InvalidParametersError(f"visibility: one of {', '.join(VISIBILITIES)}, got {body['visibility']!r}")
        out["visibility"] = body["visibility"]
    return out


def _int(name: str, raw: str | None, default: int, lo: int, hi: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise InvalidParametersError(f"{name}: must be an integer, got {raw!r}") from None
    if not lo <= n <= hi:
        raise InvalidParametersError(f"{name}: must be between {lo} and {hi}, got {n}")
    return n


# ---------------------------------------------------------------------------- service
class MarketplaceService:
    def __init__(self, store: Store, templates_dir: Path | None = None):
        self.store = store
        self.templates_dir = templates_dir
        self._seed_lock = threading.Lock()
        self._seeded = False

    # -- built-ins ---------------------------------------------------------------------------
    def seed_builtins(self) -> list[str]:
        """Load the built-in templates not loaded before into this store; returns their names."""
        with self._seed_lock:
            if self._seeded or self.templates_dir is None:
                self._seeded = True
                return []
            added = []
            for tpl in load_templates(self.templates_dir):
                with self.store.session() as s:
                    if s.get(MarketplaceSeed, tpl["name"]) is not None:
                        continue
                    t = now_ms()
                    s.add(MarketplaceSeed(name=tpl["name"], seeded_time=t))
                    exists = s.scalar(
                        select(MarketplaceItem.id).where(
                            MarketplaceItem.author == BUILTIN_AUTHOR, MarketplaceItem.name == tpl["name"]
                        )
                    )
                    if exists is None:
                        item = MarketplaceItem(
                            id=uuid.uuid4().hex, author=BUILTIN_AUTHOR, source="builtin", type="template",
                            visibility="public", use_count=0, star_count=0, created_time=t, updated_time=t,
                            summary="", description="",
                        )
                        self._apply(item, tpl)
                        s.add(item)
                        added.append(tpl["name"])
            self._seeded = True
            return added

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _visible(caller: CallerLike):
        if caller.admin:
            return true()
        conds = [MarketplaceItem.visibility == "public", MarketplaceItem.author == caller.username]
        if caller.groups:
            conds.append(
                and_(
                    MarketplaceItem.visibility == "groups",
                    MarketplaceItem.groups.any(MarketplaceGroup.group_name.in_(sorted(caller.groups))),
                )
            )
        return or_(*conds)

    def _get(self, s: Session, caller: CallerLike, item_id: str) -> MarketplaceItem:
        item = s.scalar(select(MarketplaceItem).where(MarketplaceItem.id == item_id, self._visible(caller)))
        if item is None:
            raise NoItemError(f"Marketplace item {item_id} is not found.")
        return item

    @staticmethod
    def _may_edit(caller: CallerLike, item: MarketplaceItem) -> bool:
        return caller.admin or item.author == caller.username

    def _require_edit(self, caller: CallerLike, item: MarketplaceItem) -> None:
        if not self._may_edit(caller, item):
            raise ForbiddenUserError(f"Only the author ({item.author}) or an admin may change item {item.id}.")

    @staticmethod
    def _apply(item: MarketplaceItem, fields: Mapping[str, Any]) -> None:
        for key in ("name", "summary", "description", "protocol", "notebook", "visibility"):
            if key in fields:
                setattr(item, key, fields[key])
        if "tags" in fields:
            item.tags = [MarketplaceTag(tag=v, position=i) for i, v in enumerate(fields["tags"])]
        if "categories" in fields:
            item.categories = [MarketplaceCategory(category=v, position=i) for i, v in enumerate(fields["categories"])]
        if "groups" in fields:
            item.groups = [MarketplaceGroup(group_name=v, position=i) for i, v in enumerate(fields["groups"])]

    def _dict(self, s: Session, caller: CallerLike, item: MarketplaceItem, *, full: bool) -> dict:
        starred = s.get(MarketplaceStar, (item.id, caller.username)) is not None
        d: dict[str, Any] = {
            "id": item.id,
            "name": item.name,
            "author": item.author,
            "type": item.type,
            "source": item.source,
            "summary": item.summary,
            "description": item.description,
            "tags": [t.tag for t in item.tags],
            "categories": [c.category for c in item.categories],
            "visibility": item.visibility,
            "groups": [g.group_name for g in item.groups],
            "hasNotebook": item.notebook is not None,
            "useCount": item.use_count,
            "starCount": item.star_count,
            "starred": starred,
            "editable": self._may_edit(caller, item),
            "createdTime": item.created_time,
            "updatedTime": item.updated_time,
        }
        if full:
            d["protocol"] = item.protocol
            d["notebook"] = item.notebook
        return d

    # -- read --------------------------------------------------------------------------------
    def search(self, caller: CallerLike, args: Mapping[str, str | None]) -> dict:
        """Items the caller may see, filtered (keyword, name, author, tag, category, visibility,
        source, starred), ordered (`order=useCount,DESC`) and paged (offset, limit)."""
        self.seed_builtins()
        offset = _int("offset", args.get("offset"), 0, 0, 2**31 - 1)
        limit = _int("limit", args.get("limit"), 100, 1, 1000)
        field, _, direction = (args.get("order") or "useCount,DESC").partition(",")
        if field not in ORDER_FIELDS:
            raise InvalidParametersError(f"order: unknown field {field!r} (one of {', '.join(ORDER_FIELDS)})")
        if direction.upper() not in ("", "ASC", "DESC"):
            raise InvalidParametersError(f"order: direction must be ASC or DESC, got {direction!r}")
        visibility = args.get("visibility")
        if visibility and visibility not in VISIBILITIES:
            raise InvalidParametersError(f"visibility: one of {', '.join(VISIBILITIES)}, got {visibility!r}")
        starred = (args.get("starred") or "").lower()
        if starred not in ("", "true", "false"):
            raise InvalidParametersError(f"starred: true or false, got {args.get('starred')!r}")
        conds = [self._visible(caller)]
        if args.get("keyword"):
            kw = args["keyword"].lower()
            conds.append(
                or_(
                    func.lower(MarketplaceItem.name).contains(kw, autoescape=True),
                    func.lower(MarketplaceItem.summary).contains(kw, autoescape=True),
                    func.lower(MarketplaceItem.description).contains(kw, autoescape=True),
                    MarketplaceItem.tags.any(func.lower(MarketplaceTag.tag).contains(kw, autoescape=True)),
                )
            )
        if args.get("name"):
            conds.append(MarketplaceItem.name == args["name"])
        if args.get("author"):
            conds.append(MarketplaceItem.author == args["author"])
        if args.get("source"):
            conds.append(MarketplaceItem.source == args["source"])
        if args.get("tag"):
            conds.append(MarketplaceItem.tags.any(MarketplaceTag.tag == args["tag"]))
        if args.get("category"):
            conds.append(MarketplaceItem.categories.any(MarketplaceCategory.category == args["category"]))
        if visibility:
            conds.append(MarketplaceItem.visibility == visibility)
        if starred:
            mine = select(MarketplaceStar.item_id).where(MarketplaceStar.username == caller.username)
            conds.append(MarketplaceItem.id.in_(mine) if starred == "true" else MarketplaceItem.id.notin_(mine))
        with self.store.session() as s:
            stmt = select(MarketplaceItem).where(and_(*conds))
            total = s.scalar(select(func.count()).select_from(stmt.subquery()))
            col = ORDER_FIELDS[field]
            order = col.asc() if direction.upper() == "ASC" or (field == "name" and not direction) else col.desc()
            rows = s.scalars(stmt.order_by(order, MarketplaceItem.name.asc()).offset(offset).limit(limit))
            return {"totalCount": total, "items": [self._dict(s, caller, i, full=False) for i in rows]}

    def get(self, caller: CallerLike, item_id: str) -> dict:
        self.seed_builtins()
        with self.store.session() as s:
            return self._dict(s, caller, self._get(s, caller, item_id), full=True)

    def labels(self, caller: CallerLike, kind: str) -> list[str]:
        """Distinct tags (`kind="tags"`) or categories of the items the caller may see."""
        self.seed_builtins()
        model, column = (MarketplaceTag, MarketplaceTag.tag) if kind == "tags" else (MarketplaceCategory, MarketplaceCategory.category)
        with self.store.session() as s:
            visible = select(MarketplaceItem.id).where(self._visible(caller))
            return sorted(set(s.scalars(select(column).where(model.item_id.in_(visible)))))

    # -- write -------------------------------------------------------------------------------
    def create(self, caller: CallerLike, body: Mapping[str, Any]) -> dict:
        fields = validate(body, partial=False)
        fields.setdefault("visibility", "public")
        self._check_groups(fields)
        t = now_ms()
        with self.store.session() as s:
            self._check_name(s, caller.username, fields["name"])
            item = MarketplaceItem(
                id=uuid.uuid4().hex, author=caller.username, source="user", type="template", summary="",
                description="", use_count=0, star_count=0, created_time=t, updated_time=t,
            )
            self._apply(item, fields)
            s.add(item)
            s.flush()
            return self._dict(s, caller, item, full=True)

    @staticmethod
    def _check_groups(fields: Mapping[str, Any], item: MarketplaceItem | None = None) -> None:
        visibility = fields.get("visibility", item.visibility if item else "public")
        groups = fields.get("groups", [g.group_name for g in item.groups] if item else [])
        if visibility == "groups" and not groups:
            raise InvalidParametersError("groups: required (at least one group) when visibility is groups")

    @staticmethod
    def _check_name(s: Session, author: str, name: str, item_id: str | None = None) -> None:
        stmt = select(MarketplaceItem.id).where(MarketplaceItem.author == author, MarketplaceItem.name == name)
        if item_id is not None:
            stmt = stmt.where(MarketplaceItem.id != item_id)
        if s.scalar(stmt) is not None:
            raise ConflictItemError(f"name: {author} already has an item named {name!r}.")

    def update(self, caller: CallerLike, item_id: str, body: Mapping[str, Any]) -> dict:
        fields = validate(body, partial=True)
        with self.store.session() as s:
            item = self._get(s, caller, item_id)
            self._require_edit(caller, item)
            self._check_groups(fields, item)
            if "name" in fields:
                self._check_name(s, item.author, fields["name"], item.id)
            self._apply(item, fields)
            item.updated_time = now_ms()
            s.flush()
            return self._dict(s, caller, item, full=True)

    def delete(self, caller: CallerLike, item_id: str) -> None:
        with self.store.session() as s:
            item = self._get(s, caller, item_id)
            self._require_edit(caller, item)
            s.delete(item)

    def star(self, caller: CallerLike, item_id: str, on: bool) -> dict:
        with self.store.session() as s:
            item = self._get(s, caller, item_id)
            row = s.get(MarketplaceStar, (item.id, caller.username))
            if on and row is None:
                s.add(MarketplaceStar(item_id=item.id, username=caller.username, created_time=now_ms()))
            elif not on and row is not None:
                s.delete(row)
            s.flush()
            item.star_count = s.scalar(select(func.count()).where(MarketplaceStar.item_id == item.id)) or 0
            s.flush()
            return self._dict(s, caller, item, full=False)

    def use(self, caller: CallerLike, item_id: str) -> dict:
        """Count one use and hand back what to submit (the protocol) or open (the notebook)."""
        with self.store.session() as s:
            item = self._get(s, caller, item_id)
            item.use_count = MarketplaceItem.use_count + 1
            s.flush()
            s.refresh(item)
            return {"id": item.id, "name": item.name, "protocol": item.protocol, "notebook": item.notebook,
                    "useCount": item.use_count}


# ---------------------------------------------------------------------------- templates on disk
def load_templates(root: Path) -> list[dict[str, Any]]:
    """Every `root/*/template.yaml`: metadata, with `description`, `protocol` and `notebook` read
    from the files they name (README.md, job.yaml, notebook.ipynb by default)."""
    out = []
    for meta_path in sorted(Path(root).glob("*/template.yaml")):
        try:
            out.append(_load_template(meta_path))
        except (OSError, ValueError, yaml.YAMLError, AttributeError, TypeError) as e:
            log.warning("marketplace: skipping the template in %s: %s", meta_path.parent, e)
    return out


def _load_template(meta_path: Path) -> dict[str, Any]:
    folder = meta_path.parent
    meta = yaml.safe_load(meta_path.read_text()) or {}
    tpl: dict[str, Any] = {
        "name": meta.get("name") or folder.name,
        "summary": meta.get("summary", ""),
        "tags": list(meta.get("tags") or []),
        "categories": list(meta.get("categories") or []),
    }
    desc = folder / meta.get("description", "README.md")
    tpl["description"] = desc.read_text() if desc.is_file() else ""
    tpl["protocol"] = (folder / meta.get("protocol", "job.yaml")).read_text()
    nb = folder / meta.get("notebook", "notebook.ipynb")
    tpl["notebook"] = json.loads(nb.read_text()) if nb.is_file() else None
    validate(tpl, partial=False)  # a template the API would refuse is skipped, not half-loaded
    return tpl

