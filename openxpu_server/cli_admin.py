"""`openxpu login`, `openxpu token ...` and the admin's `openxpu user|group|vc|storage list|add|remove|grant`.

All of them speak REST to a server: `--server/--token`, else OPENXPU_SERVER/OPENXPU_TOKEN, else what
`openxpu login` saved in `~/.config/openxpu/credentials.json` (mode 0600). Importing this module
makes the saved login the default of every other command too (it fills OPENXPU_SERVER/OPENXPU_TOKEN
when they are unset), so `openxpu run job.yaml` after `openxpu login` runs as that user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import httpx

CREDENTIALS = Path(os.environ.get("OPENXPU_CREDENTIALS") or Path.home() / ".config" / "openxpu" / "credentials.json")


def load_credentials() -> dict[str, str]:
    try:
        data = json.loads(CREDENTIALS.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_credentials(server: str, token: str, user: str) -> None:
    CREDENTIALS.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"server": server, "token": token, "user": user}, f)


def _defaults_from_login() -> None:
    saved = load_credentials()
    if saved.get("server") and saved.get("token") and not os.environ.get("OPENXPU_SERVER"):
        os.environ["OPENXPU_SERVER"] = saved["server"]
        os.environ.setdefault("OPENXPU_TOKEN", saved["token"])


_defaults_from_login()


class Rest:
    """A tiny REST client: `{code, message}` errors become click errors."""

    def __init__(self, server: str | None, token: str | None):
        if not server:
            raise click.ClickException("no server: pass --server, set OPENXPU_SERVER, or run `openxpu login`")
        self.base = server.rstrip("/") + "/openxpu/api/v2"
        self.http = httpx.Client(headers={"Authorization": f"token {token}"} if token else {}, timeout=30)

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, f"{self.base}/{path}", **kw)
        except httpx.HTTPError as e:
            raise click.ClickException(f"cannot reach {self.base}: {e}") from None
        if r.status_code >= 400:
            try:
                body = r.json()
                raise click.ClickException(f"{r.status_code} {body.get('code')}: {body.get('message')}")
            except ValueError:
                raise click.ClickException(f"{r.status_code} {r.text[:300]}") from None
        ctype = r.headers.get("Content-Type", "")
        return r.json() if ctype.startswith("application/json") else r.content


def server_options(fn):
    fn = click.option("--token", envvar="OPENXPU_TOKEN", help="Jupyter or OpenXPU token.")(fn)
    return click.option("--server", envvar="OPENXPU_SERVER", help="Jupyter server URL.")(fn)


def _rest(server: str | None, token: str | None) -> Rest:
    return Rest(server, token)


def _table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v)) or "-"
    return "-" if v is None else str(v)


# ------------------------------------------------------------------------------------------ login
@click.command()
@click.option("--server", envvar="OPENXPU_SERVER", required=True, help="Jupyter server URL.")
@click.option("--user", "username", required=True, help="Your OpenXPU username.")
@click.password_option(confirmation_prompt=False, help="Your password (asked for when not given).")
@click.option("--expiration", type=click.IntRange(60), help="Token lifetime in seconds (default: the server's, 7 days).")
def login(server: str, username: str, password: str, expiration: int | None) -> None:
    """Log in with a password; the bearer token is saved for the next commands."""
    body: dict[str, Any] = {"username": username, "password": password}
    if expiration:
        body["expiration"] = expiration
    reply = Rest(server, None)("POST", "authn/basic/login", json=body)
    save_credentials(server, reply["token"], reply["user"])
    click.echo(f"Logged in to {server} as {reply['user']}{' (admin)' if reply['admin'] else ''}; token saved in {CREDENTIALS}")


# ------------------------------------------------------------------------------------------ tokens
@click.group()
def token() -> None:
    """Your tokens: list, create (bearer or application), revoke."""


@token.command(name="list")
@server_options
def token_list(server, token) -> None:
    _table(_rest(server, token)("GET", "tokens")["tokens"],
           ["tokenId", "application", "description", "expiresTime", "lastUsedTime", "current"])


@token.command(name="create")
@click.option("--application", is_flag=True, help="A non-expiring token for job operations only (CI, alerts).")
@click.option("--description", default="")
@server_options
def token_create(application: bool, description: str, server, token) -> None:
    path = "tokens/application" if application else "tokens"
    reply = _rest(server, token)("POST", path, json={"description": description})
    click.echo(reply["token"])


@token.command(name="revoke")
@click.argument("token_or_id")
@server_options
def token_revoke(token_or_id: str, server, token) -> None:
    _rest(server, token)("DELETE", f"tokens/{token_or_id}")
    click.echo("revoked")


# ------------------------------------------------------------------------------------------ users
@click.group()
def user() -> None:
    """Users (admin)."""


@user.command(name="list")
@server_options
def user_list(server, token) -> None:
    _table(_rest(server, token)("GET", "users"), ["username", "admin", "grouplist", "virtualCluster", "email"])


@user.command(name="add")
@click.argument("username")
@click.password_option(help="The user's password (asked for when not given).")
@click.option("--group", "groups", multiple=True, help="A group (repeatable); `default` is always added.")
@click.option("--admin", is_flag=True)
@click.option("--email", default="")
@server_options
def user_add(username, password, groups, admin, email, server, token) -> None:
    body = {"username": username, "password": password, "grouplist": ["default", *groups], "admin": admin,
            "email": email}
    u = _rest(server, token)("POST", "users", json=body)
    click.echo(f"user {u['username']} in {', '.join(u['grouplist'])}")


@user.command(name="remove")
@click.argument("username")
@server_options
def user_remove(username, server, token) -> None:
    _rest(server, token)("DELETE", f"users/{username}")
    click.echo(f"user {username} removed")


@user.command(name="grant")
@click.argument("username")
@click.argument("group")
@click.option("--revoke", is_flag=True, help="Take the user out of the group instead.")
@server_options
def user_grant(username, group, revoke, server, token) -> None:
    """Put a user in a group (its VCs, storages and admin rights come with it)."""
    rest = _rest(server, token)
    groups = rest("GET", f"users/{username}")["grouplist"]
    groups = [g for g in groups if g != group] if revoke else [*groups, group]
    u = rest("PUT", f"users/{username}", json={"grouplist": list(dict.fromkeys(groups))})
    click.echo(f"user {username} in {', '.join(u['grouplist'])}")


# ------------------------------------------------------------------------------------------ groups
@click.group()
def group() -> None:
    """Groups and their grants (admin)."""


def _group_rows(groups: list[dict]) -> list[dict]:
    return [{"groupname": g["groupname"], **g["extension"]["acls"], "description": g["description"]} for g in groups]


@group.command(name="list")
@server_options
def group_list(server, token) -> None:
    _table(_group_rows(_rest(server, token)("GET", "groups")),
           ["groupname", "admin", "virtualClusters", "storageConfigs", "description"])


@group.command(name="add")
@click.argument("groupname")
@click.option("--vc", "vcs", multiple=True, help="A VC its users may submit to (repeatable).")
@click.option("--storage", "storages", multiple=True, help="A storage its users may use (repeatable; first = default).")
@click.option("--admin", is_flag=True, help="Its users are admins.")
@click.option("--description", default="")
@server_options
def group_add(groupname, vcs, storages, admin, description, server, token) -> None:
    body = {"groupname": groupname, "description": description,
            "extension": {"acls": {"admin": admin, "virtualClusters": list(vcs), "storageConfigs": list(storages)}}}
    _rest(server, token)("POST", "groups", json=body)
    click.echo(f"group {groupname} added")


@group.command(name="remove")
@click.argument("groupname")
@server_options
def group_remove(groupname, server, token) -> None:
    _rest(server, token)("DELETE", f"groups/{groupname}")
    click.echo(f"group {groupname} removed")


def _grant(rest: Rest, groupname: str, key: str, value: str, revoke: bool) -> None:
    acls = rest("GET", f"groups/{groupname}")["extension"]["acls"]
    items = [x for x in acls[key] if x != value] + ([] if revoke else [value])
    rest("PUT", f"groups/{groupname}", json={"extension": {"acls": {key: items}}})
    click.echo(f"{'revoked' if revoke else 'granted'} {value} {'from' if revoke else 'to'} group {groupname}")


@group.command(name="grant")
@click.argument("groupname")
@click.option("--vc", help="Grant this VC.")
@click.option("--storage", help="Grant this storage.")
@click.option("--revoke", is_flag=True)
@server_options
def group_grant(groupname, vc, storage, revoke, server, token) -> None:
    """Grant (or --revoke) a VC or a storage to a group."""
    if not vc and not storage:
        raise click.UsageError("give --vc or --storage")
    rest = _rest(server, token)
    if vc:
        _grant(rest, groupname, "virtualClusters", vc, revoke)
    if storage:
        _grant(rest, groupname, "storageConfigs", storage, revoke)


# ------------------------------------------------------------------------------------------ VCs
@click.group()
def vc() -> None:
    """Virtual clusters: list; create, resize, limit, remove and grant (admin)."""


@vc.command(name="list")
@server_options
def vc_list(server, token) -> None:
    vcs = _rest(server, token)("GET", "virtual-clusters")
    rows = [{"vc": name, "capacity%": v["capacity"], "used%": v["usedCapacity"],
             "gpu": f"{v['resourcesUsed']['gpu']}/{v['resourcesGuaranteed']['gpu']}",
             "cpu": f"{v['resourcesUsed']['cpu']}/{v['resourcesGuaranteed']['cpu']}",
             "maxGpuPerUser": v["maxGpuPerUser"], "maxJobsPerUser": v["maxJobsPerUser"],
             "cells": [f"{c['cellType']}={c['cellNumber']}" for c in v["virtualCells"]]} for name, v in vcs.items()]
    _table(rows, ["vc", "capacity%", "used%", "gpu", "cpu", "maxGpuPerUser", "maxJobsPerUser", "cells"])


@vc.command(name="add")
@click.argument("name")
@click.option("--cells", multiple=True, metavar="CELLTYPE=N", help="Virtual cells, e.g. GPU-NODE.GPU-PAIR=2 (repeatable).")
@click.option("--max-gpu-per-user", type=click.IntRange(0), help="Per-user GPU limit in this VC.")
@click.option("--max-jobs-per-user", type=click.IntRange(0), help="Per-user running-job limit in this VC.")
@click.option("--description")
@server_options
def vc_add(name, cells, max_gpu_per_user, max_jobs_per_user, description, server, token) -> None:
    """Create a VC, or resize / set limits of an existing one (applied to the running scheduler)."""
    body: dict[str, Any] = {}
    if cells:
        body["virtualCells"] = []
        for c in cells:
            cell_type, sep, n = c.rpartition("=")
            if not sep or not n.isdigit():
                raise click.BadParameter(f"{c!r}: use CELLTYPE=N", param_hint="--cells")
            body["virtualCells"].append({"cellType": cell_type, "cellNumber": int(n)})
    if max_gpu_per_user is not None:
        body["maxGpuPerUser"] = max_gpu_per_user
    if max_jobs_per_user is not None:
        body["maxJobsPerUser"] = max_jobs_per_user
    if description is not None:
        body["description"] = description
    v = _rest(server, token)("PUT", f"virtual-clusters/{name}", json=body)
    click.echo(f"vc {name}: guaranteed {v['resourcesGuaranteed']['gpu']} GPU(s), {v['resourcesGuaranteed']['cpu']} CPU(s)")


@vc.command(name="remove")
@click.argument("name")
@server_options
def vc_remove(name, server, token) -> None:
    _rest(server, token)("DELETE", f"virtual-clusters/{name}")
    click.echo(f"vc {name} removed")


@vc.command(name="grant")
@click.argument("name")
@click.argument("groupname")
@click.option("--revoke", is_flag=True)
@server_options
def vc_grant(name, groupname, revoke, server, token) -> None:
    """Let the users of a group submit to this VC."""
    _grant(_rest(server, token), groupname, "virtualClusters", name, revoke)


# ------------------------------------------------------------------------------------------ storages
@click.group()
def storage() -> None:
    """Storages: list and files for users; add, remove, grant for admins."""


@storage.command(name="list")
@server_options
def storage_list(server, token) -> None:
    _table(_rest(server, token)("GET", "storages")["storages"], ["name", "share", "readOnly", "mountPath", "default"])


@storage.command(name="add")
@click.argument("name")
@click.option("--path", help="Directory on the server's host (default: <storage_root>/<name>).")
@click.option("--per-user", is_flag=True, help="share: false, a subdirectory per user.")
@click.option("--read-only", is_flag=True)
@click.option("--mount-path", help="Where tasks see it (default /mnt/<name>, under $PAI_WORK_DIR).")
@server_options
def storage_add(name, path, per_user, read_only, mount_path, server, token) -> None:
    body: dict[str, Any] = {"name": name, "share": not per_user, "readOnly": read_only}
    if path:
        body["path"] = path
    if mount_path:
        body["mountPath"] = mount_path
    s = _rest(server, token)("POST", "storages", json=body)
    click.echo(f"storage {name} at {s['data']['path']}")


@storage.command(name="remove")
@click.argument("name")
@server_options
def storage_remove(name, server, token) -> None:
    _rest(server, token)("DELETE", f"storages/{name}")
    click.echo(f"storage {name} removed (its files stay on disk)")


@storage.command(name="grant")
@click.argument("name")
@click.argument("groupname")
@click.option("--revoke", is_flag=True)
@server_options
def storage_grant(name, groupname, revoke, server, token) -> None:
    """Let the users of a group use this storage."""
    _grant(_rest(server, token), groupname, "storageConfigs", name, revoke)


@storage.command(name="ls")
@click.argument("name")
@click.argument("path", default="")
@server_options
def storage_ls(name, path, server, token) -> None:
    listing = _rest(server, token)("GET", f"storages/{name}/files", params={"path": path})
    _table(listing["entries"], ["name", "type", "size"])


@storage.command(name="put")
@click.argument("name")
@click.argument("local", type=click.Path(exists=True, dir_okay=False))
@click.argument("path")
@server_options
def storage_put(name, local, path, server, token) -> None:
    r = _rest(server, token)("PUT", f"storages/{name}/files", params={"path": path}, content=Path(local).read_bytes())
    click.echo(f"{r['size']} bytes -> {name}:{r['path']}")


@storage.command(name="get")
@click.argument("name")
@click.argument("path")
@click.argument("local", type=click.Path(dir_okay=False))
@server_options
def storage_get(name, path, local, server, token) -> None:
    data = _rest(server, token)("GET", f"storages/{name}/files", params={"path": path})
    if isinstance(data, dict):
        raise click.ClickException(f"{path} is a directory")
    Path(local).write_bytes(data)
    click.echo(f"{name}:{path} -> {local} ({len(data)} bytes)")


def mount(main: click.Group) -> None:
    """Add the accounts commands to `openxpu` (called by cli.py)."""
    for command in (login, token, user, group, vc, storage):
        main.add_command(command)
