"""THE authorization table: who may call each (method, route) of the REST API, in one place.

`TABLE` maps every operation of `api/openapi.yaml` to a `Level`. The API's base handler looks the
request up here before the handler runs (no row: 403, deny by default) and enforces the
credential part (anonymous, application token, admin, self); the services enforce the
resource part named by the level (job visibility and ownership, VC grants, storage grants) on the
same `Caller`. `docs/admin-guide.md` carries the same table between `authz-table` markers and a
test asserts that the two agree, and another walks every route as five different callers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from ..errors import ForbiddenUserError, OpenXPUError

API = "/openxpu/api/v2"


class UnauthorizedUserError(OpenXPUError):
    status = 401
    code = "UnauthorizedUserError"


@dataclass(frozen=True)
class Caller:
    """Who is making a request, as every service sees it: authorization decides on this alone.

    `application`: the request came with an application token (job operations only, as OpenPAI).
    """

    username: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    application: bool = False
    token_id: str | None = None


class Level(str, Enum):
    """Who may call an operation. `T` = any credential (application tokens included), `U` = a user
    credential (not an application token), as in OpenPAI's rest-server."""

    PUBLIC = "public"  # no credential needed (password login)
    ANY = "any"  # T
    USER = "user"  # U
    ADMIN = "admin"  # U + admin
    SELF = "self"  # U + the user named in the path, or an admin
    JOB_READ = "job-read"  # T + the job is visible to the caller (visibility all|group|own), else 404
    JOB_SUBMIT = "job-submit"  # T + the job's VC is granted to one of the caller's groups, else 403
    JOB_OWNER = "job-owner"  # T + owner or admin (visible but not owner: 403; invisible: 404)
    STORAGE = "storage"  # U + the storage is granted to one of the caller's groups (admins: all), else 403


# What each level means, for the admin guide and error messages.
MEANING = {
    Level.PUBLIC: "anyone, no credential",
    Level.ANY: "any credential, application tokens included",
    Level.USER: "a user's credential (not an application token)",
    Level.ADMIN: "an admin's user credential",
    Level.SELF: "that user or an admin (user credential)",
    Level.JOB_READ: "any credential that can see the job (visibility all / group / own)",
    Level.JOB_SUBMIT: "any credential; the job's VC must be granted to one of the caller's groups",
    Level.JOB_OWNER: "the job's owner or an admin, application tokens included",
    Level.STORAGE: "a user credential whose groups are granted the storage (admins: every storage)",
}

_JOB = f"{API}/jobs/{{job}}"
_TASK = f"{_JOB}/attempts/{{jobAttemptId}}/taskRoles/{{taskRoleName}}/taskIndex/{{taskIndex}}/attempts"

TABLE: dict[tuple[str, str], Level] = {
    # ---------------------------------------------------------------- info
    ("GET", f"{API}/"): Level.ANY,
    ("GET", f"{API}/info"): Level.ANY,
    # ---------------------------------------------------------------- jobs
    ("GET", f"{API}/jobs"): Level.JOB_READ,  # lists only the jobs the caller can see
    ("POST", f"{API}/jobs"): Level.JOB_SUBMIT,
    ("GET", _JOB): Level.JOB_READ,
    ("GET", f"{_JOB}/attempts/{{jobAttemptId}}"): Level.JOB_READ,
    ("GET", f"{_JOB}/config"): Level.JOB_READ,
    ("PUT", f"{_JOB}/executionType"): Level.JOB_OWNER,
    ("PUT", f"{_JOB}/tag"): Level.JOB_OWNER,
    ("DELETE", f"{_JOB}/tag"): Level.JOB_OWNER,
    ("GET", f"{_JOB}/events"): Level.JOB_READ,
    ("GET", _TASK): Level.JOB_READ,
    ("GET", f"{_TASK}/{{taskAttemptId}}/logs"): Level.JOB_READ,
    ("GET", f"{_TASK}/{{taskAttemptId}}/logs/{{logName}}"): Level.JOB_READ,
    # ---------------------------------------------------------------- authentication and tokens
    ("POST", f"{API}/authn/basic/login"): Level.PUBLIC,
    ("DELETE", f"{API}/authn/basic/logout"): Level.USER,
    ("GET", f"{API}/tokens"): Level.USER,
    ("POST", f"{API}/tokens"): Level.USER,
    ("POST", f"{API}/tokens/application"): Level.USER,
    ("GET", f"{API}/tokens/check"): Level.ANY,
    ("DELETE", f"{API}/tokens/{{token}}"): Level.USER,  # one's own tokens; admins: anyone's
    # ---------------------------------------------------------------- users and groups
    ("GET", f"{API}/users"): Level.ADMIN,
    ("POST", f"{API}/users"): Level.ADMIN,
    ("GET", f"{API}/users/{{username}}"): Level.SELF,
    ("PUT", f"{API}/users/{{username}}"): Level.SELF,  # only admins change grouplist/admin
    ("DELETE", f"{API}/users/{{username}}"): Level.ADMIN,
    ("GET", f"{API}/groups"): Level.USER,
    ("POST", f"{API}/groups"): Level.ADMIN,
    ("GET", f"{API}/groups/{{groupname}}"): Level.USER,
    ("PUT", f"{API}/groups/{{groupname}}"): Level.ADMIN,
    ("DELETE", f"{API}/groups/{{groupname}}"): Level.ADMIN,
    # ---------------------------------------------------------------- virtual clusters
    ("GET", f"{API}/virtual-clusters"): Level.ANY,
    ("GET", f"{API}/virtual-clusters/{{vc}}"): Level.ANY,
    ("PUT", f"{API}/virtual-clusters/{{vc}}"): Level.ADMIN,
    ("DELETE", f"{API}/virtual-clusters/{{vc}}"): Level.ADMIN,
    ("GET", f"{API}/cluster/sku-types"): Level.ANY,
    # ---------------------------------------------------------------- storages
    ("GET", f"{API}/storages"): Level.USER,  # lists only the storages the caller may use
    ("POST", f"{API}/storages"): Level.ADMIN,
    ("GET", f"{API}/storages/{{storage}}"): Level.STORAGE,
    ("DELETE", f"{API}/storages/{{storage}}"): Level.ADMIN,
    ("GET", f"{API}/storages/{{storage}}/files"): Level.STORAGE,
    ("PUT", f"{API}/storages/{{storage}}/files"): Level.STORAGE,  # and the storage is not readOnly
    # ---------------------------------------------------------------- job outputs
    ("GET", f"{_JOB}/outputs"): Level.JOB_READ,
    ("GET", f"{_TASK}/{{taskAttemptId}}/outputs/{{path}}"): Level.JOB_READ,
    # ---------------------------------------------------------------- notebook -> job
    # reads any notebook under the server's root: its own user (an admin by default) only
    ("POST", f"{API}/convert/notebook"): Level.ADMIN,
    # ---------------------------------------------------------------- marketplace
    # USER: item visibility, authorship and admin rights are decided by the marketplace service on the Caller
    ("GET", f"{API}/marketplace/items"): Level.USER,
    ("POST", f"{API}/marketplace/items"): Level.USER,
    ("GET", f"{API}/marketplace/items/{{itemId}}"): Level.USER,
    ("PUT", f"{API}/marketplace/items/{{itemId}}"): Level.USER,
    ("DELETE", f"{API}/marketplace/items/{{itemId}}"): Level.USER,
    ("PUT", f"{API}/marketplace/items/{{itemId}}/star"): Level.USER,
    ("DELETE", f"{API}/marketplace/items/{{itemId}}/star"): Level.USER,
    ("POST", f"{API}/marketplace/items/{{itemId}}/use"): Level.USER,
    ("GET", f"{API}/marketplace/tags"): Level.USER,
    ("GET", f"{API}/marketplace/categories"): Level.USER,
}


def normalize(template: str) -> str:
    """Templates compare modulo parameter names and a trailing slash (as the OpenAPI parity test does)."""
    return re.sub(r"\{[^}]+\}", "{}", template).rstrip("/") or "/"


_BY_NORM = {(m, normalize(t)): level for (m, t), level in TABLE.items()}


def rule(method: str, template: str) -> Level | None:
    """The table's level for a documented operation (parameter names may differ from the table's)."""
    return _BY_NORM.get((method.upper(), normalize(template)))


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    # `{path}` (a file inside a job's outputs) may hold slashes; every other parameter is one segment.
    rx = "".join((".+" if p == "{path}" else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(rx.rstrip("/") + "/?")


# Most literal characters first, so `/tokens/check` wins over `/tokens/{token}`.
_MATCHERS = sorted(
    ((len(re.sub(r"\{[^}]+\}", "", t)), t, _compile(t)) for t in {t for _, t in TABLE}), key=lambda m: -m[0]
)


def template_of(path: str) -> str | None:
    """The documented path template a request path (without base_url) belongs to."""
    for _, template, rx in _MATCHERS:
        if rx.fullmatch(path):
            return template
    return None


def level_of(method: str, path: str) -> Level | None:
    template = template_of(path)
    return None if template is None else rule(method, template)


APP_FORBIDDEN = "Applications are not allowed to do this operation."


def require(level: Level, caller: Caller | None, *, path_user: str | None = None) -> None:
    """The credential part of `level` (the resource part is the services'). Raises 401/403."""
    if level is Level.PUBLIC:
        return
    if caller is None:
        raise UnauthorizedUserError("Guest is not allowed to do this operation.")
    if level in (Level.USER, Level.ADMIN, Level.SELF, Level.STORAGE) and caller.application:
        raise ForbiddenUserError(APP_FORBIDDEN)
    if level is Level.ADMIN and not caller.admin:
        raise ForbiddenUserError("Non-admin is not allowed to do this operation.")
    if level is Level.SELF and not (caller.admin or caller.username == path_user):
        raise ForbiddenUserError(f"Only {path_user} or an admin may do this operation.")


# ---------------------------------------------------------------------- job visibility
VISIBILITIES = ("all", "group", "own")
# Everyone is in `default`: sharing only that group does not make jobs visible under `group`.
NOT_SHARING_GROUPS = frozenset({"default"})


def can_see_job(caller: Caller, owner: str, owner_groups: frozenset[str], visibility: str) -> bool:
    if caller.admin or caller.username == owner or visibility == "all":
        return True
    if visibility == "group":
        return bool((caller.groups & owner_groups) - NOT_SHARING_GROUPS)
    return False


def can_change_job(caller: Caller, owner: str) -> bool:
    return caller.admin or caller.username == owner
