"""AccountService and StorageService on a real store (SQLite, and PostgreSQL in CI)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from openxpu_server.errors import ForbiddenUserError, InvalidParametersError
from openxpu_server.services.accounts import AccountService, ConflictUserError
from openxpu_server.services.authz import UnauthorizedUserError
from openxpu_server.services.storage import StorageService
from openxpu_server.store.db import Store
from openxpu_server.store.models_accounts import Token, User


@pytest.fixture
def accounts(db_url):
    store = Store(db_url)
    service = AccountService(store)
    service.bootstrap(default_vcs=["default"], lab_user="root", lab_user_is_admin=True)
    yield service
    store.dispose()


def test_bootstrap_and_derived_rights(accounts):
    root = accounts.caller("root")
    assert root.admin and root.groups == {"default", "admingroup"}
    accounts.bootstrap(default_vcs=["default"], lab_user="root", lab_user_is_admin=False)  # a restart, reconfigured
    assert not accounts.caller("root").admin
    accounts.create_group({"groupname": "gpu", "extension": {"acls": {"virtualClusters": ["big"]}}})
    accounts.create_user({"username": "eve", "password": "eve-secret", "grouplist": ["gpu"]})
    eve = accounts.caller("eve")
    assert eve.groups == {"default", "gpu"} and not eve.admin
    assert accounts.granted_vcs(eve) == {"default", "big"}
    with pytest.raises(ConflictUserError):
        accounts.create_user({"username": "eve", "password": "another-one"})
    with pytest.raises(InvalidParametersError, match="password"):
        accounts.create_user({"username": "fay", "password": "short"})
    with pytest.raises(InvalidParametersError, match="username"):
        accounts.create_user({"username": "../x", "password": "long-enough"})


def test_passwords_and_tokens_are_never_stored_in_clear(accounts):
    accounts.create_user({"username": "gus", "password": "gus-password"})
    issued, caller = accounts.login("gus", "gus-password")
    assert caller.username == "gus" and issued.expires_time is not None
    with pytest.raises(UnauthorizedUserError):
        accounts.login("gus", "wrong-password")
    with pytest.raises(UnauthorizedUserError):
        accounts.login("nobody", "gus-password")
    with accounts.store.session() as s:
        user = s.scalar(select(User).where(User.username == "gus"))
        assert user.password_hash.startswith("$argon2") and "gus-password" not in user.password_hash
        digests = list(s.scalars(select(Token.digest)))
    assert digests and all(issued.token not in d and len(d) == 64 for d in digests)
    assert accounts.verify_token(issued.token).username == "gus"
    assert accounts.verify_token(issued.token + "x") is None


def test_expired_tokens_are_refused_and_purged(accounts):
    issued = accounts.issue("root", expiration=60)
    with accounts.store.session() as s:
        s.scalar(select(Token).where(Token.token_id == issued.token_id)).expires_time = 1
    assert accounts.verify_token(issued.token) is None
    with accounts.store.session() as s:
        assert s.scalar(select(Token).where(Token.token_id == issued.token_id)) is None


def test_admins_cannot_lock_themselves_out(accounts):
    root = accounts.caller("root")
    with pytest.raises(ForbiddenUserError):
        accounts.update_user(root, "root", {"admin": False})
    with pytest.raises(ForbiddenUserError):
        accounts.delete_user(root, "root")
    with pytest.raises(ForbiddenUserError):
        accounts.delete_group("admingroup")
    # Replacing the group list keeps `default` and works on memberships that already exist.
    user = accounts.update_user(root, "root", {"grouplist": ["admingroup"], "admin": True})
    assert user["grouplist"] == ["default", "admingroup"]


def test_storage_files_stay_inside_the_storage(accounts, tmp_path):
    storages = StorageService(accounts.store, accounts, root=tmp_path / "st", mount_mode="link")
    storages.create({"name": "box", "share": False})
    accounts.create_group({"groupname": "g", "extension": {"acls": {"storageConfigs": ["box"]}}})
    accounts.create_user({"username": "hal", "password": "hal-secret", "grouplist": ["g"]})
    hal = accounts.caller("hal")
    storages.upload(hal, "box", "a/b.txt", b"data")
    assert (tmp_path / "st" / "box" / "hal" / "a" / "b.txt").read_bytes() == b"data"
    (tmp_path / "outside").mkdir()
    (tmp_path / "st" / "box" / "hal" / "escape").symlink_to(tmp_path / "outside")
    for bad in ("../x", "/etc/passwd", "a/../../x", "escape/secret"):
        with pytest.raises(InvalidParametersError):
            storages.upload(hal, "box", bad, b"x")
    assert not list((tmp_path / "outside").iterdir())
    # link mode cannot enforce read-only: a job asking for a read-only storage is refused.
    storages.create({"name": "ro", "readOnly": True})
    accounts.grant("g", storage="ro")
    from openxpu_server.errors import InvalidProtocolError

    with pytest.raises(InvalidProtocolError, match="read-only"):
        storages.job_mounts(accounts.caller("hal"), {"storages": [{"name": "ro"}]})
