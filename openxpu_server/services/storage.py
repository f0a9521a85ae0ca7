"""Admin-defined storages granted to groups, made available inside tasks, and a files API.

On one box a storage is a directory of the server's host (`share: false`: a subdirectory per user).
A job's `extras.storages` (`[]`: the user's default storages) appear in every task at
`$PAI_WORK_DIR/<mountPath>`, with `PAI_STORAGE_<NAME>` set to that path.

How (`mount_mode`): `bind` (used when `unshare` can create a mount namespace, checked at start)
re-executes the task's script in a private mount namespace (`unshare -m`, or `-rm` when not root)
and bind-mounts each storage there, read-only storages with `remount,bind,ro`: a write from the
task fails with EROFS, whatever its uid, and nothing leaks into the host's mount table. `link`
(no namespaces available) symlinks writable storages and refuses read-only ones at submit (a
symlink cannot enforce read-only). Limits: a task running as real root could remount its private
view read-write; this protects data from mistakes, not from a hostile root task (the Kubernetes
backend's read-only volumes are the real boundary).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..errors import ForbiddenUserError, InvalidParametersError, InvalidProtocolError, OpenXPUError
from ..store.db import Store, now_ms
from ..store.models_accounts import Storage
from .accounts import AccountService
from .authz import Caller

NAME_RE = re.compile(r"^[A-Za-z0-9_][\w.-]{0,63}$")
MOUNT_RE = re.compile(r"^/[\w.-]+(/[\w.-]+)*$")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024


class NoStorageError(OpenXPUError):
    status = 404
    code = "NoStorageError"


class NoFileError(OpenXPUError):
    status = 404
    code = "NoFileError"


def env_name(name: str) -> str:
    return "PAI_STORAGE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def probe_mount_mode() -> str:
    """`bind` when this process can bind-mount read-only inside a new mount namespace, else `link`."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "link"
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    with tempfile.TemporaryDirectory() as d:
        script = f"mount --bind {shlex.quote(d)} {shlex.quote(d)} && mount -o remount,bind,ro {shlex.quote(d)}"
        try:
            r = subprocess.run(["unshare", *flags, "--propagation", "private", "--", "sh", "-c", script],
                               capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return "link"
    return "bind" if r.returncode == 0 else "link"


class StorageService:
    def __init__(self, store: Store, accounts: AccountService, *, root: str | os.PathLike, mount_mode: str = "auto"):
        self.store = store
        self.accounts = accounts
        self.root = Path(root)
        self.mount_mode = probe_mount_mode() if mount_mode == "auto" else mount_mode

    # ------------------------------------------------------------------ admin
    def create(self, body: dict) -> dict:
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidParametersError(f"name: 1-64 letters, digits, '_', '.' or '-', got {name!r}")
        path = body.get("path") or str(self.root / name)
        if not isinstance(path, str) or not os.path.isabs(path):
            raise InvalidParametersError("path: an absolute directory path on the server's host")
        for key in ("share", "readOnly"):
            if key in body and not isinstance(body[key], bool):
                raise InvalidParametersError(f"{key}: must be true or false")
        mount = body.get("mountPath", f"/mnt/{name}")
        _check_mount(mount, "mountPath")
        with self.store.session() as s:
            if s.scalar(select(Storage).where(Storage.name == name)) is not None:
                raise OpenXPUError(f"Storage {name} already exists.", code="ConflictStorageError", status=409)
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as e:
                raise InvalidParametersError(f"path: cannot create {path}: {e.strerror}") from None
            row = Storage(name=name, type="local", path=os.path.realpath(path), share=body.get("share", True),
                          read_only=body.get("readOnly", False), mount_path=mount, created_time=now_ms())
            s.add(row)
            s.flush()
            return self._detail(row)

    def delete(self, name: str) -> None:
        with self.store.session() as s:
            s.delete(self._row(s, name))
        self.accounts.forget_storage(name)

    def names(self) -> list[str]:
        with self.store.session() as s:
            return list(s.scalars(select(Storage.name).order_by(Storage.name)))

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _row(s, name: str) -> Storage:
        row = s.scalar(select(Storage).where(Storage.name == name))
        if row is None:
            raise NoStorageError(f"Storage {name} is not found.")
        return row

    @staticmethod
    def _detail(row: Storage) -> dict:
        return {
            "name": row.name,
            "share": row.share,
            "volumeName": row.name,
            "type": row.type,
            "readOnly": row.read_only,
            "mountPath": row.mount_path,
            "data": {"path": row.path},
        }

    def list(self, caller: Caller, *, default_only: bool = False) -> dict:
        granted, defaults = self.accounts.granted_storages(caller)
        with self.store.session() as s:
            rows = {r.name: r for r in s.scalars(select(Storage).where(Storage.name.in_(granted)))}
        out = []
        for name in granted:
            if name in rows and (not default_only or name in defaults):
                r = rows[name]
                out.append({"name": r.name, "share": r.share, "volumeName": r.name, "type": r.type,
                            "readOnly": r.read_only, "mountPath": r.mount_path, "default": name in defaults})
        return {"storages": out}

    def _granted_row(self, caller: Caller, name: str) -> Storage:
        with self.store.session() as s:
            row = self._row(s, name)
        granted, _ = self.accounts.granted_storages(caller)
        if name not in granted:
            raise ForbiddenUserError(f"storage: {name} is not granted to any of your groups")
        return row

    def get(self, caller: Caller, name: str) -> dict:
        return self._detail(self._granted_row(caller, name))

    # ------------------------------------------------------------------ files
    def _user_root(self, row: Storage, username: str) -> Path:
        root = Path(row.path) if row.share else Path(row.path) / username
        if not row.share and not row.read_only:
            root.mkdir(parents=True, exist_ok=True)
        return root

    def _resolve(self, caller: Caller, name: str, rel: str) -> tuple[Storage, Path, Path]:
        row = self._granted_row(caller, name)
        root = self._user_root(row, caller.username).resolve()
        if rel.startswith("/") or "\x00" in rel or any(p == ".." for p in rel.split("/")):
            raise InvalidParametersError(f"path: must be relative inside the storage, without '..': {rel!r}")
        target = (root / rel).resolve()
        if target != root and not target.is_relative_to(root):
            raise InvalidParametersError(f"path: {rel!r} leaves the storage (symlink)")
        return row, root, target

    def files(self, caller: Caller, name: str, rel: str) -> tuple[str, Any]:
        """('dir', listing) or ('file', path) for `rel` inside the caller's view of the storage."""
        _, root, target = self._resolve(caller, name, rel)
        if target.is_dir():
            entries = []
            for child in sorted(target.iterdir(), key=lambda p: p.name):
                st = child.lstat()
                kind = "directory" if child.is_dir() else "file"
                entries.append({"name": child.name, "type": kind, "size": st.st_size, "mtime": int(st.st_mtime * 1000)})
            shown = "" if target == root else str(target.relative_to(root))
            return "dir", {"storage": name, "path": shown, "entries": entries}
        if target.is_file():
            return "file", target
        raise NoFileError(f"path: {rel!r} does not exist in storage {name}")

    def upload(self, caller: Caller, name: str, rel: str, data: bytes) -> dict:
        row, root, target = self._resolve(caller, name, rel)
        if row.read_only:
            raise ForbiddenUserError(f"storage: {name} is read-only")
        if not rel or target == root or target.is_dir():
            raise InvalidParametersError("path: the file to write (not a directory)")
        if len(data) > MAX_UPLOAD_BYTES:
            raise OpenXPUError(f"body: larger than {MAX_UPLOAD_BYTES} bytes", code="InvalidParametersError", status=413)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.upload")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return {"storage": name, "path": str(target.relative_to(root)), "size": len(data)}

    # ------------------------------------------------------------------ jobs
    def job_mounts(self, caller: Caller, extras: dict) -> list[dict]:
        """The storages a job asks for (`extras.storages`; `[]`: the user's defaults), checked."""
        if "storages" not in extras:
            return []
        wanted = extras["storages"]
        granted, defaults = self.accounts.granted_storages(caller)
        if not wanted:
            wanted = [{"name": n} for n in defaults]
        mounts = []
        with self.store.session() as s:
            for i, item in enumerate(wanted):
                name = item["name"]
                row = s.scalar(select(Storage).where(Storage.name == name))
                if row is None:
                    raise InvalidProtocolError(f"extras.storages[{i}].name", f"no storage named {name}")
                if name not in granted:
                    raise ForbiddenUserError(f"extras.storages[{i}].name: storage {name} is not granted to any of your groups")
                mount = item.get("mountPath") or row.mount_path or f"/mnt/{name}"
                _check_mount(mount, f"extras.storages[{i}].mountPath", protocol=True)
                if row.read_only and self.mount_mode != "bind":
                    raise InvalidProtocolError(
                        f"extras.storages[{i}].name",
                        f"storage {name} is read-only and this server cannot enforce read-only mounts "
                        "(no mount namespaces: see the admin guide, 'Storages')",
                    )
                src = self._user_root(row, caller.username)
                if not src.exists():
                    raise InvalidProtocolError(f"extras.storages[{i}].name", f"{src} does not exist on the server")
                mounts.append({"name": name, "src": str(src), "mountPath": mount, "readOnly": row.read_only})
        return mounts

    def setup_commands(self, mounts: list[dict]) -> list[str]:
        """Shell lines run before the role's commands (like OpenPAI's storage runtime plugin)."""
        if not mounts:
            return []
        lines = []
        if self.mount_mode == "bind":
            flags = "-m" if os.geteuid() == 0 else "-r -m"
            lines.append(
                'if [ -z "${OPENXPU_STORAGE_NS:-}" ]; then export OPENXPU_STORAGE_NS=1; '
                f'exec unshare {flags} --propagation private -- bash -e "$0"; fi'
            )
        for m in mounts:
            dst = '"$PAI_WORK_DIR"' + shlex.quote(m["mountPath"])
            src = shlex.quote(m["src"])
            if self.mount_mode == "bind":
                ro = f" && mount -o remount,bind,ro {dst}" if m["readOnly"] else ""
                lines.append(f"mkdir -p {dst} && mount --bind {src} {dst}{ro}")
            else:
                lines.append(f"mkdir -p \"$(dirname {dst})\" && ln -sfn {src} {dst}")
            lines.append(f"export {env_name(m['name'])}={dst}")
        return lines


def _check_mount(mount: Any, field: str, *, protocol: bool = False) -> None:
    if not isinstance(mount, str) or not MOUNT_RE.match(mount) or any(p in ("..", ".") for p in mount.split("/")):
        rule = f"an absolute path of letters, digits, '_', '.', '-' without '..', got {mount!r}"
        if protocol:
            raise InvalidProtocolError(field, rule)
        raise InvalidParametersError(f"{field}: {rule}")
