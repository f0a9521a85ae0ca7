"""The accounts CLI against a real `jupyter openxpu`: an admin sets up, a user logs in and works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from servers import TOKEN, Server


def openxpu(*args: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "openxpu_server.cli", *args], capture_output=True, text=True,
                         env=env, timeout=60)
    if ok:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}",
                 f"--OpenXPU.layout_file={Path(__file__).resolve().parents[1] / 'api' / 'layout.yaml'}",
                 f"--OpenXPU.storage_root={tmp_path / 'storages'}")
    srv.start()
    yield srv
    srv.stop()


def test_admin_sets_up_and_a_user_logs_in(server, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENXPU_")}
    admin = {**base, "OPENXPU_SERVER": server.url, "OPENXPU_TOKEN": TOKEN,
             "OPENXPU_CREDENTIALS": str(tmp_path / "admin-credentials.json")}
    openxpu("storage", "add", "notes", "--per-user", env=admin)
    openxpu("group", "add", "lab", "--vc", "research", "--storage", "notes", env=admin)
    openxpu("user", "add", "dora", "--password", "dora-secret", "--group", "lab", env=admin)
    openxpu("vc", "add", "research", "--max-jobs-per-user", "2", env=admin)
    assert "dora" in openxpu("user", "list", env=admin).stdout
    groups = openxpu("group", "list", env=admin).stdout
    assert "lab" in groups and "research" in groups and "notes" in groups
    vcs = openxpu("vc", "list", env=admin).stdout
    assert "research" in vcs and "2" in vcs
    # A wrong password is refused, with the server's {code, message}.
    user = {**base, "OPENXPU_CREDENTIALS": str(tmp_path / "dora.json")}
    bad = openxpu("login", "--server", server.url, "--user", "dora", "--password", "wrong-one", env=user, ok=False)
    assert bad.returncode != 0 and "UnauthorizedUserError" in bad.stderr

    out = openxpu("login", "--server", server.url, "--user", "dora", "--password", "dora-secret", env=user)
    assert "as dora" in out.stdout
    assert oct((tmp_path / "dora.json").stat().st_mode & 0o777) == "0o600"
    # Every other command now runs as dora on that server, with no --server/--token.
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "protocolVersion": 2, "name": "cli-job", "type": "job",
        "prerequisites": [{"type": "dockerimage", "name": "img", "uri": "python:3.11-slim"}],
        "defaults": {"virtualCluster": "research"},
        "extras": {"storages": []},
        "taskRoles": {"worker": {"dockerImage": "img", "resourcePerInstance": {"cpu": 1, "memoryMB": 128, "gpu": 0},
                                 "commands": ['echo from-dora > "$PAI_STORAGE_NOTES/hello.txt"']}}}))
    run = openxpu("run", str(job), env=user)
    assert "SUCCEEDED" in run.stdout + run.stderr
    assert (tmp_path / "storages" / "notes" / "dora" / "hello.txt").read_text() == "from-dora\n"
    assert "hello.txt" in openxpu("storage", "ls", "notes", env=user).stdout
    openxpu("storage", "get", "notes", "hello.txt", str(tmp_path / "copy.txt"), env=user)
    assert (tmp_path / "copy.txt").read_text() == "from-dora\n"
    # dora is not an admin, and her application tokens can be listed and revoked.
    assert "ForbiddenUserError" in openxpu("user", "list", env=user, ok=False).stderr
    app_token = openxpu("token", "create", "--application", "--description", "ci", env=user).stdout.strip()
    listed = openxpu("token", "list", env=user).stdout
    assert "ci" in listed and app_token.split("_")[1] in listed
    openxpu("token", "revoke", app_token.split("_")[1], env=user)
    assert app_token.split("_")[1] not in openxpu("token", "list", env=user).stdout
    openxpu("user", "remove", "dora", env=admin)
    assert "dora" not in openxpu("user", "list", env=admin).stdout
