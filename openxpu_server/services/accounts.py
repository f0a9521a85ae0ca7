"""Users, groups and tokens (OpenPAI §5): groups' ACLs drive admin, VC and storage grants.

A user is an admin iff one of its groups has `admin`; its VCs and storages are the union of its
groups' grants (admins: all); its default storages are the first storage of each of its groups.
Passwords are argon2 hashes. Tokens are `oxp_<id>_<secret>`; the store keeps only the public id
and a SHA-256 of the whole token, so a leaked database cannot be replayed; a revoked or expired
token is refused on its next request (every request looks its token up).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ForbiddenUserError, InvalidParametersError, OpenXPUError
from ..store.db import Store, now_ms
from ..store.models_accounts import Group, Storage, Token, User, UserGroup
from .authz import Caller, UnauthorizedUserError

NAME_RE = re.compile(r"^[\w.-]{1,64}$")
GROUP_RE = re.compile(r"^[\w.-]{1,64}$")
MIN_PASSWORD = 6
DEFAULT_TOKEN_TTL_S = 7 * 24 * 3600
MAX_TOKEN_TTL_S = 365 * 24 * 3600
BUILTIN_GROUPS = ("default", "admingroup")
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not-a-password")  # verified for unknown users: same timing either way


class NoUserError(OpenXPUError):
    status = 404
    code = "NoUserError"


class NoGroupError(OpenXPUError):
    status = 404
    code = "NoGroupError"


class ConflictUserError(OpenXPUError):
    status = 409
    code = "ConflictUserError"


class NoTokenError(OpenXPUError):
    status = 404
    code = "NoTokenError"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(kind: str, value: Any, rx: re.Pattern[str] = NAME_RE) -> str:
    if not isinstance(value, str) or not rx.match(value):
        raise InvalidParametersError(f"{kind}: must be 1-64 letters, digits, '_', '.' or '-', got {value!r}")
    return value


def _str_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParametersError(f"{name}: must be a list of names")
    return list(dict.fromkeys(value))


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    application: bool
    expires_time: int | None


class AccountService:
    def __init__(self, store: Store, *, token_ttl_s: int = DEFAULT_TOKEN_TTL_S):
        self.store = store
        self.token_ttl_s = token_ttl_s

    # ------------------------------------------------------------------ bootstrap
    def bootstrap(self, *, default_vcs: list[str], lab_user: str | None = None, lab_user_is_admin: bool = True) -> None:
        """The built-in groups (`default`: VC default for everyone; `admingroup`: admin) and the lab's user."""
        with self.store.session() as s:
            if self._group(s, "default", missing_ok=True) is None:
                s.add(Group(groupname="default", description="every user", virtual_clusters=list(default_vcs),
                            storages=[], extension={}))
            if self._group(s, "admingroup", missing_ok=True) is None:
                s.add(Group(groupname="admingroup", description="administrators", admin=True,
                            virtual_clusters=[], storages=[], extension={}))
        if lab_user:
            groups = ["default", "admingroup"] if lab_user_is_admin else ["default"]
            self.ensure_user(lab_user, groups, origin="lab")
            if not lab_user_is_admin:
                with self.store.session() as s:
                    user = self._user(s, lab_user)
                    admin = self._group(s, "admingroup")
                    user.memberships = [m for m in user.memberships if m.group_id != admin.id]

    def ensure_user(self, username: str, groups: list[str], *, origin: str) -> None:
        """Create the user (no password) if new and add it to `groups` (created if missing):
        how lab and JupyterHub identities become OpenXPU users on their first request."""
        with self.store.session() as s:
            user = self._user(s, username, missing_ok=True)
            if user is None:
                user = User(username=username, email="", extension={}, origin=origin, created_time=now_ms())
                s.add(user)
                s.flush()
            have = {m.group_id for m in user.memberships}
            for name in groups:
                group = self._group(s, name, missing_ok=True)
                if group is None:
                    group = Group(groupname=name, description=f"from {origin}", virtual_clusters=[], storages=[],
                                  extension={})
                    s.add(group)
                    s.flush()
                if group.id not in have:
                    user.memberships.append(UserGroup(group_id=group.id, position=len(user.memberships)))
                    have.add(group.id)

    # ------------------------------------------------------------------ lookups
    @staticmethod
    def _user(s: Session, username: str, *, missing_ok: bool = False) -> User | None:
        user = s.scalar(select(User).where(User.username == username))
        if user is None and not missing_ok:
            raise NoUserError(f"User {username} is not found.")
        return user

    @staticmethod
    def _group(s: Session, name: str, *, missing_ok: bool = False) -> Group | None:
        group = s.scalar(select(Group).where(Group.groupname == name))
        if group is None and not missing_ok:
            raise NoGroupError(f"Group {name} is not found.")
        return group

    @staticmethod
    def _groups_of(s: Session, user: User) -> list[Group]:
        ids = [m.group_id for m in user.memberships]
        by_id = {g.id: g for g in s.scalars(select(Group).where(Group.id.in_(ids)))} if ids else {}
        return [by_id[i] for i in ids if i in by_id]

    def caller(self, username: str, *, application: bool = False, token_id: str | None = None) -> Caller:
        with self.store.session() as s:
            user = self._user(s, username)
            groups = self._groups_of(s, user)
            return Caller(username, frozenset(g.groupname for g in groups), any(g.admin for g in groups),
                          application, token_id)

    def exists(self, username: str) -> bool:
        with self.store.session() as s:
            return self._user(s, username, missing_ok=True) is not None

    def groups_of(self, username: str) -> frozenset[str]:
        with self.store.session() as s:
            user = self._user(s, username, missing_ok=True)
            return frozenset(g.groupname for g in self._groups_of(s, user)) if user else frozenset()

    def users_sharing_groups(self, caller: Caller, exclude: frozenset[str]) -> set[str]:
        """Usernames with a group in common with the caller (groups in `exclude` do not count)."""
        names = caller.groups - exclude
        with self.store.session() as s:
            ids = select(Group.id).where(Group.groupname.in_(names))
            rows = s.scalars(select(User.username).join(UserGroup, UserGroup.user_id == User.id)
                             .where(UserGroup.group_id.in_(ids)))
            return set(rows) | {caller.username}

    def granted_vcs(self, caller: Caller) -> set[str] | None:
        """VCs the caller may submit to; None = all (admins)."""
        if caller.admin:
            return None
        with self.store.session() as s:
            groups = s.scalars(select(Group).where(Group.groupname.in_(caller.groups)))
            return {vc for g in groups for vc in g.virtual_clusters}

    def granted_storages(self, caller: Caller) -> tuple[list[str], list[str]]:
        """(storages the caller may use, its default storages) — admins may use every storage."""
        with self.store.session() as s:
            user = self._user(s, caller.username, missing_ok=True)
            groups = self._groups_of(s, user) if user else []
            defaults = list(dict.fromkeys(g.storages[0] for g in groups if g.storages))
            granted = list(dict.fromkeys(n for g in groups for n in g.storages))
            if caller.admin:
                granted = list(dict.fromkeys([*granted, *s.scalars(select(Storage.name).order_by(Storage.name))]))
            return granted, defaults

    # ------------------------------------------------------------------ users
    def user_dict(self, s: Session, user: User) -> dict:
        groups = self._groups_of(s, user)
        admin = any(g.admin for g in groups)
        all_vcs = admin
        return {
            "username": user.username,
            "email": user.email,
            "grouplist": [g.groupname for g in groups],
            "extension": user.extension or {},
            "admin": admin,
            "virtualCluster": ["*"] if all_vcs else sorted({vc for g in groups for vc in g.virtual_clusters}),
            "storageConfig": list(dict.fromkeys(n for g in groups for n in g.storages)),
            "origin": user.origin,
        }

    def list_users(self) -> list[dict]:
        with self.store.session() as s:
            return [self.user_dict(s, u) for u in s.scalars(select(User).order_by(User.username))]

    def get_user(self, username: str) -> dict:
        with self.store.session() as s:
            return self.user_dict(s, self._user(s, username))

    def create_user(self, body: dict) -> dict:
        username = _check_name("username", body.get("username"))
        password = body.get("password")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise InvalidParametersError(f"password: required, at least {MIN_PASSWORD} characters")
        email = body.get("email", "")
        if not isinstance(email, str):
            raise InvalidParametersError("email: must be a string")
        groups = _str_list("grouplist", body.get("grouplist", ["default"]))
        if "default" not in groups:
            groups.insert(0, "default")
        if body.get("admin") is True and "admingroup" not in groups:
            groups.append("admingroup")
        extension = body.get("extension", {})
        if not isinstance(extension, dict):
            raise InvalidParametersError("extension: must be an object")
        with self.store.session() as s:
            if self._user(s, username, missing_ok=True) is not None:
                raise ConflictUserError(f"User {username} already exists.")
            group_rows = [self._group_for_update(s, g) for g in groups]
            user = User(username=username, email=email, password_hash=_hasher.hash(password), extension=extension,
                        origin="basic", created_time=now_ms())
            user.memberships = [UserGroup(group_id=g.id, position=i) for i, g in enumerate(group_rows)]
            s.add(user)
            s.flush()
            return self.user_dict(s, user)

    def _group_for_update(self, s: Session, name: str) -> Group:
        group = self._group(s, name, missing_ok=True)
        if group is None:
            raise InvalidParametersError(f"grouplist: group {name} does not exist (create it first)")
        return group

    def update_user(self, caller: Caller, username: str, body: dict) -> dict:
        """Patch a user. Users may change their own email, password (with oldPassword) and extension;
        grouplist and admin are for admins."""
        with self.store.session() as s:
            user = self._user(s, username)
            if ("grouplist" in body or "admin" in body) and not caller.admin:
                raise ForbiddenUserError("grouplist, admin: only an admin may change them")
            if "email" in body:
                if not isinstance(body["email"], str):
                    raise InvalidParametersError("email: must be a string")
                user.email = body["email"]
            if "extension" in body:
                if not isinstance(body["extension"], dict):
                    raise InvalidParametersError("extension: must be an object")
                user.extension = {**(user.extension or {}), **body["extension"]}
            if "password" in body:
                new = body["password"]
                if not isinstance(new, str) or len(new) < MIN_PASSWORD:
                    raise InvalidParametersError(f"password: at least {MIN_PASSWORD} characters")
                if not caller.admin and not _verify(user.password_hash, body.get("oldPassword")):
                    raise ForbiddenUserError("oldPassword: does not match the current password")
                user.password_hash = _hasher.hash(new)
            groups: list[str] | None = None
            if "grouplist" in body:
                groups = _str_list("grouplist", body["grouplist"])
            if "admin" in body:
                if not isinstance(body["admin"], bool):
                    raise InvalidParametersError("admin: must be true or false")
                current = groups if groups is not None else [g.groupname for g in self._groups_of(s, user)]
                if body["admin"] and "admingroup" not in current:
                    current = [*current, "admingroup"]
                if not body["admin"]:
                    current = [g for g in current if g != "admingroup"]
                groups = current
            if groups is not None:
                if username == caller.username and "admingroup" not in groups and caller.admin:
                    raise ForbiddenUserError("admin: an admin cannot remove their own admin rights")
                if "default" not in groups:
                    groups.insert(0, "default")  # every user is in `default`
                self._set_groups(s, user, [self._group_for_update(s, g) for g in groups])
            s.flush()
            return self.user_dict(s, user)

    @staticmethod
    def _set_groups(s: Session, user: User, groups: list[Group]) -> None:
        """Replace the user's groups in place (kept memberships keep their rows: no unique clash)."""
        by_group = {m.group_id: m for m in user.memberships}
        wanted = list(dict.fromkeys(g.id for g in groups))
        for gid, m in by_group.items():
            if gid not in wanted:
                user.memberships.remove(m)
        s.flush()
        for i, gid in enumerate(wanted):
            if gid in by_group:
                by_group[gid].position = i
            else:
                user.memberships.append(UserGroup(group_id=gid, position=i))

    def add_to_group(self, username: str, groupname: str) -> None:
        with self.store.session() as s:
            user = self._user(s, username)
            group = self._group(s, groupname)
            if group.id not in {m.group_id for m in user.memberships}:
                user.memberships.append(UserGroup(group_id=group.id, position=len(user.memberships)))

    def delete_user(self, caller: Caller, username: str) -> None:
        if username == caller.username:
            raise ForbiddenUserError("username: you cannot delete yourself")
        with self.store.session() as s:
            s.delete(self._user(s, username))

    # ------------------------------------------------------------------ groups
    @staticmethod
    def group_dict(g: Group) -> dict:
        return {
            "groupname": g.groupname,
            "description": g.description,
            "externalName": g.external_name,
            "extension": {
                **(g.extension or {}),
                "acls": {"admin": g.admin, "virtualClusters": list(g.virtual_clusters),
                         "storageConfigs": list(g.storages)},
            },
        }

    def list_groups(self) -> list[dict]:
        with self.store.session() as s:
            return [self.group_dict(g) for g in s.scalars(select(Group).order_by(Group.groupname))]

    def get_group(self, name: str) -> dict:
        with self.store.session() as s:
            return self.group_dict(self._group(s, name))

    def members(self, name: str) -> list[str]:
        with self.store.session() as s:
            group = self._group(s, name)
            return sorted(s.scalars(select(User.username).join(UserGroup, UserGroup.user_id == User.id)
                                    .where(UserGroup.group_id == group.id)))

    def create_group(self, body: dict) -> dict:
        name = _check_name("groupname", body.get("groupname"), GROUP_RE)
        with self.store.session() as s:
            if self._group(s, name, missing_ok=True) is not None:
                raise ConflictUserError(f"Group {name} already exists.", code="ConflictGroupError")
            group = Group(groupname=name, description="", external_name="", admin=False, virtual_clusters=[],
                          storages=[], extension={})
            self._apply_group(group, body)
            s.add(group)
            s.flush()
            return self.group_dict(group)

    def update_group(self, name: str, body: dict) -> dict:
        with self.store.session() as s:
            group = self._group(s, name)
            if name == "admingroup" and body.get("extension", {}).get("acls", {}).get("admin") is False:
                raise ForbiddenUserError("extension.acls.admin: admingroup stays the admin group")
            self._apply_group(group, body)
            s.flush()
            return self.group_dict(group)

    @staticmethod
    def _apply_group(group: Group, body: dict) -> None:
        for key, attr in (("description", "description"), ("externalName", "external_name")):
            if key in body:
                if not isinstance(body[key], str):
                    raise InvalidParametersError(f"{key}: must be a string")
                setattr(group, attr, body[key])
        ext = body.get("extension", {})
        if not isinstance(ext, dict):
            raise InvalidParametersError("extension: must be an object")
        acls = ext.get("acls", {})
        if not isinstance(acls, dict):
            raise InvalidParametersError("extension.acls: must be an object")
        if "admin" in acls:
            if not isinstance(acls["admin"], bool):
                raise InvalidParametersError("extension.acls.admin: must be true or false")
            group.admin = acls["admin"]
        if "virtualClusters" in acls:
            group.virtual_clusters = _str_list("extension.acls.virtualClusters", acls["virtualClusters"])
        if "storageConfigs" in acls:
            group.storages = _str_list("extension.acls.storageConfigs", acls["storageConfigs"])
        rest = {k: v for k, v in ext.items() if k != "acls"}
        if rest:
            group.extension = {**(group.extension or {}), **rest}

    def grant(self, groupname: str, *, vc: str | None = None, storage: str | None = None, revoke: bool = False) -> dict:
        """Add (or remove) a VC or a storage to a group's ACLs."""
        with self.store.session() as s:
            group = self._group(s, groupname)
            for value, attr in ((vc, "virtual_clusters"), (storage, "storages")):
                if value is None:
                    continue
                items = [x for x in getattr(group, attr) if x != value]
                if not revoke:
                    items.append(value)
                setattr(group, attr, items)
            return self.group_dict(group)

    def delete_group(self, name: str) -> None:
        if name in BUILTIN_GROUPS:
            raise ForbiddenUserError(f"groupname: {name} is a built-in group and cannot be deleted")
        with self.store.session() as s:
            s.delete(self._group(s, name))

    def forget_vc(self, vc: str) -> None:
        """A deleted VC leaves every group's grants."""
        with self.store.session() as s:
            for g in s.scalars(select(Group)):
                if vc in g.virtual_clusters:
                    g.virtual_clusters = [x for x in g.virtual_clusters if x != vc]

    def forget_storage(self, name: str) -> None:
        with self.store.session() as s:
            for g in s.scalars(select(Group)):
                if name in g.storages:
                    g.storages = [x for x in g.storages if x != name]

    # ------------------------------------------------------------------ passwords and tokens
    def login(self, username: Any, password: Any, *, expiration: Any = None) -> tuple[IssuedToken, Caller]:
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidParametersError("username, password: required strings")
        with self.store.session() as s:
            user = self._user(s, username, missing_ok=True)
            stored = user.password_hash if user is not None else None
        if not _verify(stored or _DUMMY_HASH, password) or stored is None:
            raise UnauthorizedUserError("username or password is incorrect.")
        return self.issue(username, expiration=expiration), self.caller(username)

    def issue(self, username: str, *, application: bool = False, expiration: Any = None,
              description: str = "") -> IssuedToken:
        """A new token: expiring (default 7 days, `expiration` seconds 60..1 year) or application (never)."""
        ttl = self.token_ttl_s
        if expiration is not None:
            if isinstance(expiration, bool) or not isinstance(expiration, int) or not 60 <= expiration <= MAX_TOKEN_TTL_S:
                raise InvalidParametersError(f"expiration: seconds between 60 and {MAX_TOKEN_TTL_S}")
            ttl = expiration
        if not isinstance(description, str) or len(description) > 255:
            raise InvalidParametersError("description: a string of at most 255 characters")
        token_id = secrets.token_hex(6)
        token = f"oxp_{token_id}_{secrets.token_urlsafe(32)}"
        t = now_ms()
        expires = None if application else t + ttl * 1000
        with self.store.session() as s:
            user = self._user(s, username)
            s.add(Token(token_id=token_id, digest=_digest(token), user_id=user.id, application=application,
                        description=description, created_time=t, expires_time=expires))
        return IssuedToken(token, token_id, application, expires)

    def verify_token(self, token: str) -> Caller | None:
        """The caller a token stands for, or None (unknown, revoked or expired)."""
        if not token.startswith("oxp_"):
            return None
        with self.store.session() as s:
            row = s.scalar(select(Token).where(Token.digest == _digest(token)))
            if row is None:
                return None
            t = now_ms()
            if row.expires_time is not None and row.expires_time <= t:
                s.delete(row)
                return None
            if row.last_used_time is None or t - row.last_used_time > 60_000:
                row.last_used_time = t
            username = s.scalar(select(User.username).where(User.id == row.user_id))
            application, token_id = row.application, row.token_id
        return self.caller(username, application=application, token_id=token_id)

    def verify_basic(self, username: str, token: str) -> Caller | None:
        """`Basic user:apptoken` (OpenPAI): the token must belong to that user."""
        caller = self.verify_token(token)
        return caller if caller is not None and caller.username == username else None

    def list_tokens(self, caller: Caller) -> list[dict]:
        with self.store.session() as s:
            user = self._user(s, caller.username)
            t = now_ms()
            rows = s.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.created_time))
            out = []
            for r in rows:
                if r.expires_time is not None and r.expires_time <= t:
                    s.delete(r)  # expired ones are purged, as in OpenPAI
                    continue
                out.append({"tokenId": r.token_id, "application": r.application, "description": r.description,
                            "createdTime": r.created_time, "expiresTime": r.expires_time,
                            "lastUsedTime": r.last_used_time, "current": r.token_id == caller.token_id})
            return out

    def revoke(self, caller: Caller, token_or_id: str) -> None:
        """Revoke a token given as itself or its id: one's own, or anyone's for an admin."""
        with self.store.session() as s:
            if token_or_id.startswith("oxp_"):
                row = s.scalar(select(Token).where(Token.digest == _digest(token_or_id)))
            else:
                row = s.scalar(select(Token).where(Token.token_id == token_or_id))
            owner = s.scalar(select(User.username).where(User.id == row.user_id)) if row is not None else None
            if row is None or (owner != caller.username and not caller.admin):
                raise NoTokenError("token: no such token of yours")
            s.delete(row)


def _verify(stored: str | None, password: Any) -> bool:
    if not stored or not isinstance(password, str):
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


__all__ = ["AccountService", "Caller", "IssuedToken", "NoGroupError", "NoUserError"]
