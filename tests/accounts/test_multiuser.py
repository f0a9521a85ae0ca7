"""Two users and an admin against one real `jupyter openxpu`, from scratch as a new admin would.

The admin is the server's own user (`alice`, the Jupyter token); it creates the users, groups, a
read-only storage and grants through the REST API, then each user works with its own bearer token.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest
import yaml
from servers import Server

LAYOUT = Path(__file__).resolve().parents[1] / "api" / "layout.yaml"


def job(name: str, commands: list[str], *, vc: str | None = None, storages: list | None = None) -> str:
    data: dict = {
        "protocolVersion": 2, "name": name, "type": "job",
        "prerequisites": [{"type": "dockerimage", "name": "img", "uri": "python:3.11-slim"}],
        "taskRoles": {"worker": {"instances": 1, "dockerImage": "img", "commands": commands,
                                 "resourcePerInstance": {"cpu": 1, "memoryMB": 128, "gpu": 0}}},
    }
    if vc:
        data["defaults"] = {"virtualCluster": vc}
    if storages is not None:
        data["extras"] = {"storages": storages}
    return yaml.safe_dump(data, sort_keys=False)


class Client:
    def __init__(self, server: Server, auth: str):
        self.base = server.base
        self.http = httpx.Client(headers={"Authorization": auth}, timeout=15)

    def call(self, method: str, path: str, expect: int | None = None, **kw) -> httpx.Response:
        r = self.http.request(method, f"{self.base}/{path}", **kw)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:500]}"
        if r.status_code >= 400:
            body = r.json()
            assert set(body) == {"code", "message"} and body["message"], body
        return r

    def submit(self, text: str, expect: int = 202) -> httpx.Response:
        return self.call("POST", "jobs", expect, content=text, headers={"Content-Type": "text/yaml"})

    def wait(self, key: str, states=("SUCCEEDED", "FAILED", "STOPPED"), timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            detail = self.call("GET", f"jobs/{key}", 200).json()
            if detail["jobStatus"]["state"] in states:
                return detail
            time.sleep(0.1)
        raise AssertionError(f"{key} did not reach {states}: {detail['jobStatus']}")

    def log(self, key: str) -> str:
        path = f"jobs/{key}/attempts/0/taskRoles/worker/taskIndex/0/attempts/0/logs/all"
        return self.call("GET", path, 200).text


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}", f"--OpenXPU.layout_file={LAYOUT}",
                 "--OpenXPU.job_visibility=own", f"--OpenXPU.storage_root={tmp_path / 'storages'}")
    srv.start()
    yield srv
    srv.stop()


def test_two_users_and_an_admin(server, tmp_path):
    admin = Client(server, "token openxpu-test-token")  # the lab's user, an admin by default
    assert admin.call("GET", "tokens/check", 200).json() | {"groups": None} == {
        "username": "alice", "admin": True, "application": False, "groups": None, "tokenId": None}

    # -- the admin sets the place up: a read-only dataset, a class group, two students ----------
    data_dir = tmp_path / "datasets"
    data_dir.mkdir()
    (data_dir / "train.csv").write_text("x,y\n1,2\n")
    admin.call("POST", "storages", 201, json={"name": "datasets", "path": str(data_dir), "readOnly": True})
    admin.call("POST", "storages", 201, json={"name": "scratch", "share": False})
    admin.call("POST", "groups", 201, json={"groupname": "class101", "extension": {"acls": {
        "virtualClusters": ["default"], "storageConfigs": ["datasets", "scratch"]}}})
    for user in ("ana", "ben"):
        admin.call("POST", "users", 201, json={"username": user, "password": f"{user}-secret",
                                                "grouplist": ["default", "class101"]})
    admin.call("POST", "users", 409, json={"username": "ana", "password": "whatever"})
    assert {u["username"] for u in admin.call("GET", "users", 200).json()} == {"alice", "ana", "ben"}

    def login(user: str) -> str:
        r = httpx.post(f"{server.base}/authn/basic/login", json={"username": user, "password": f"{user}-secret"})
        assert r.status_code == 200, r.text
        assert r.json()["user"] == user and r.json()["admin"] is False
        return r.json()["token"]

    bad = httpx.post(f"{server.base}/authn/basic/login", json={"username": "ana", "password": "nope-nope"})
    assert bad.status_code == 401 and bad.json()["code"] == "UnauthorizedUserError"
    ana = Client(server, f"Bearer {login('ana')}")
    ben = Client(server, f"Bearer {login('ben')}")

    # -- user A's job: user B cannot see, stop, tag or read its config (visibility own) -------------
    key = ana.submit(job("train", ["sleep 30"])).json()["job"]
    assert key == "ana~train"
    ana.wait(key, ("RUNNING",))
    assert [j["name"] for j in ben.call("GET", "jobs", 200).json()] == []
    for method, path, body in (
        ("GET", f"jobs/{key}", None),
        ("GET", f"jobs/{key}/config", None),
        ("GET", f"jobs/{key}/events", None),
        ("GET", f"jobs/{key}/outputs", None),
        ("GET", f"jobs/{key}/attempts/0/taskRoles/worker/taskIndex/0/attempts/0/outputs/x.txt", None),
        ("PUT", f"jobs/{key}/executionType", {"value": "STOP"}),
        ("PUT", f"jobs/{key}/tag", {"value": "mine"}),
        ("DELETE", f"jobs/{key}/tag", {"value": "mine"}),
    ):
        r = ben.call(method, path, json=body) if body else ben.call(method, path)
        assert r.status_code == 404 and r.json()["code"] == "NoJobError", (method, path, r.text)
    assert ana.call("GET", f"jobs/{key}", 200).json()["tags"] == []
    assert ana.call("GET", f"jobs/{key}", 200).json()["jobStatus"]["executionType"] == "START"
    # The admin sees it; with visibility `all` a non-owner would get 403 on stop (the service rule).
    assert [j["name"] for j in admin.call("GET", "jobs", 200).json()] == ["train"]

    # -- an application token: job operations only ---------------------------------------------------
    app = ana.call("POST", "tokens/application", 201, json={"description": "ci"}).json()
    assert app["application"] is True and app["expiresTime"] is None
    basic = base64.b64encode(f"ana:{app['token']}".encode()).decode()
    ana_app = Client(server, f"Basic {basic}")
    ana_app.call("PUT", f"jobs/{key}/tag", 200, json={"value": "from-ci"})
    r = ana_app.call("POST", "users", json={"username": "mallory", "password": "secret-pw"})
    assert r.status_code == 403 and r.json()["code"] == "ForbiddenUserError"
    assert "Applications" in r.json()["message"]
    assert ana_app.call("POST", "tokens", json={}).status_code == 403
    # Basic with someone else's name and ana's token is no identity at all.
    wrong = base64.b64encode(f"ben:{app['token']}".encode()).decode()
    assert Client(server, f"Basic {wrong}").call("GET", "jobs").status_code == 401
    ana_app.call("PUT", f"jobs/{key}/executionType", 202, json={"value": "STOP"})
    assert ana.wait(key)["jobStatus"]["state"] == "STOPPED"

    # -- a revoked token is refused on its next request -----------------------------------------------
    ana.call("DELETE", f"tokens/{app['tokenId']}", 200)
    r = ana_app.call("GET", "jobs")
    assert r.status_code == 401 and "invalid" in r.json()["message"]
    spare = ben.call("POST", "tokens", 201, json={}).json()["token"]
    ben_spare = Client(server, f"Bearer {spare}")
    ben_spare.call("GET", "tokens/check", 200)
    ben.call("DELETE", f"tokens/{spare}", 200)  # by the token itself, as OpenPAI
    assert ben_spare.call("GET", "tokens/check").status_code == 401
    assert ben.call("DELETE", f"tokens/{app['tokenId']}").status_code == 404  # not ben's (and gone)

    # -- a job to a VC not granted is 403 ------------------------------------------------------------
    r = ben.submit(job("elsewhere", ["true"], vc="research"), expect=403)
    assert r.json()["code"] == "ForbiddenUserError" and "research" in r.json()["message"]
    admin.call("PUT", "groups/class101", 200, json={"extension": {"acls": {"virtualClusters": ["default", "research"]}}})
    ben.submit(job("elsewhere", ["true"], vc="research"), expect=202)

    # -- a read-only storage cannot be written from inside a task --------------------------------------
    script = [
        'echo "mounted at $PAI_STORAGE_DATASETS"',
        'cat "$PAI_STORAGE_DATASETS/train.csv"',
        'if echo oops > "$PAI_STORAGE_DATASETS/new.txt"; then echo WROTE; else echo REFUSED; fi',
        'echo result > "${PAI_STORAGE_SCRATCH:?}/out.txt"',
    ]
    key = ben.submit(job("readonly", script, storages=[{"name": "datasets"}, {"name": "scratch"}])).json()["job"]
    detail = ben.wait(key)
    log = ben.log(key)
    assert detail["jobStatus"]["state"] == "SUCCEEDED", log
    assert "x,y" in log and "REFUSED" in log and "WROTE" not in log, log
    assert "Read-only file system" in log, log
    assert not (data_dir / "new.txt").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == ["train.csv"]
    # `scratch` is per user (share: false): ben's file is in ben's subdirectory, visible in the files API.
    assert (tmp_path / "storages" / "scratch" / "ben" / "out.txt").read_text() == "result\n"
    assert ben.call("GET", "storages/scratch/files", 200, params={"path": "out.txt"}).text == "result\n"
    assert ana.call("GET", "storages/scratch/files", 404, params={"path": "out.txt"}).json()["code"] == "NoFileError"
    assert ben.call("PUT", "storages/datasets/files", 403, params={"path": "x.txt"}, content=b"x")
    assert ben.call("GET", "storages/scratch/files", 400, params={"path": "../ana/x"})
    # `[]` asks for the user's default storages: the first storage of each of its groups.
    defaults = ben.call("GET", "storages", 200, params={"default": "true"}).json()["storages"]
    assert [d["name"] for d in defaults] == ["datasets"]
    key = ben.submit(job("defaults", ['test -f "$PAI_STORAGE_DATASETS/train.csv"', 'test -z "${PAI_STORAGE_SCRATCH:-}"'],
                         storages=[])).json()["job"]
    assert ben.wait(key)["jobStatus"]["state"] == "SUCCEEDED", ben.log(key)
    # A storage not granted is refused at submit.
    admin.call("POST", "storages", 201, json={"name": "private"})
    r = ben.submit(job("sneaky", ["true"], storages=[{"name": "private"}]), expect=403)
    assert "extras.storages[0].name" in r.json()["message"]


def test_per_user_limit_makes_a_job_wait_with_its_reason(server):
    admin = Client(server, "token openxpu-test-token")
    admin.call("POST", "users", 201, json={"username": "cat", "password": "cat-secret"})
    admin.call("PUT", "virtual-clusters/default", 200, json={"maxJobsPerUser": 1})
    vc = admin.call("GET", "virtual-clusters/default", 200).json()
    assert vc["maxJobsPerUser"] == 1 and vc["resourcesGuaranteed"]["gpu"] == 4
    cat = Client(server, "Bearer " + httpx.post(f"{server.base}/authn/basic/login",
                                                json={"username": "cat", "password": "cat-secret"}).json()["token"])
    first = cat.submit(job("first", ["sleep 30"])).json()["job"]
    cat.wait(first, ("RUNNING",))
    second = cat.submit(job("second", ["true"])).json()["job"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = cat.call("GET", f"jobs/{second}", 200).json()["jobStatus"]
        if status.get("waitReason"):
            break
        time.sleep(0.1)
    assert status["state"] == "WAITING"
    assert "maxJobsPerUser is 1" in status["waitReason"], status
    # Another user is not held by cat's limit.
    admin_job = admin.submit(job("other", ["true"])).json()["job"]
    assert admin.wait(admin_job)["jobStatus"]["state"] == "SUCCEEDED"
    cat.call("PUT", f"jobs/{first}/executionType", 202, json={"value": "STOP"})
    assert cat.wait(second)["jobStatus"]["state"] == "SUCCEEDED"
