"""Authorization: the table (services/authz.py) against every route of the OpenAPI document, walked as
five callers (anonymous, another user, the owner, the owner's application token, an admin), plus
Jupyter's own authorizer on resource `openxpu`.

The expected status of each call is derived from the table's level for that operation, so a route
added to openapi.yaml without a row fails here, naming the route.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import nbformat
import pytest
from jupyter_server.auth.authorizer import Authorizer

from openxpu_server.services import authz
from openxpu_server.services.authz import Level

ROOT = Path(__file__).resolve().parents[2]
API_PREFIX = "/openxpu/api/v2/"
NOTEBOOK = "matrix.ipynb"  # written under the server's root for `convert/notebook`
WHO = ("anonymous", "other", "owner", "app", "admin")  # admin last: it is the one that may destroy
# Other features' routes (their own tests own their resource rules): only the credential part is
# checked here, with placeholder parameters.
GENERIC = ("/marketplace/", "/outputs")


def test_every_documented_operation_has_a_row_and_every_row_a_route(contract):
    missing = [
        f"{m.upper()} {t}" for t, m, _ in contract.operations() if authz.rule(m, t) is None
    ]
    assert not missing, "routes without a row in openxpu_server/services/authz.py TABLE: " + ", ".join(missing)
    documented = {(m.upper(), authz.normalize(t)) for t, m, _ in contract.operations()}
    extra = [f"{m} {t}" for (m, t) in authz.TABLE if (m, authz.normalize(t)) not in documented]
    assert not extra, "rows in TABLE for operations openapi.yaml does not have: " + ", ".join(extra)


def test_admin_guide_carries_the_same_table():
    text = (ROOT / "docs" / "admin-guide.md").read_text(encoding="utf-8")
    block = text.split("<!-- authz-table:start -->", 1)[1].split("<!-- authz-table:end -->", 1)[0]
    rows = {}
    for line in block.splitlines():
        m = re.match(r"\|\s*`(GET|POST|PUT|DELETE)`\s*\|\s*`([^`]+)`\s*\|\s*`([a-z-]+)`\s*\|", line)
        if m:
            rows[(m.group(1), m.group(2))] = m.group(3)
    code = {(m, t.removeprefix("/openxpu/api/v2")): level.value for (m, t), level in authz.TABLE.items()}
    assert rows == code, (
        "docs/admin-guide.md's authorization table differs from services/authz.py: "
        f"only in the doc {sorted(set(rows.items()) - set(code.items()))}, "
        f"only in the code {sorted(set(code.items()) - set(rows.items()))}"
    )


# ---------------------------------------------------------------------------------------- the matrix
class World:
    """Users, groups, a storage, VCs and a finished job of `owner`, made through the API by the admin."""

    def __init__(self, api, make_job):
        self.api, self.make_job = api, make_job
        self.tokens: dict[str, str] = {}

    async def admin(self, *parts, expect=200, **kw):
        return await self.api.json(*parts, expect=expect, **kw)

    async def login(self, user: str) -> str:
        body = {"username": user, "password": f"{user}-password"}
        return (await self.api.json("authn", "basic", "login", method="POST", body=body,
                                    headers={"Authorization": ""}))["token"]

    async def build(self) -> None:
        await self.admin("storages", method="POST", body={"name": "data"}, expect=201)
        await self.admin("groups", method="POST", expect=201, body={
            "groupname": "team", "extension": {"acls": {"virtualClusters": ["default"], "storageConfigs": ["data"]}}})
        for user, groups in (("owner", ["default", "team"]), ("other", ["default"]), ("victim", ["default"])):
            await self.admin("users", method="POST", expect=201,
                             body={"username": user, "password": f"{user}-password", "grouplist": groups})
        await self.admin("groups", method="POST", body={"groupname": "victimgroup"}, expect=201)
        await self.admin("storages", method="POST", body={"name": "victimstore"}, expect=201)
        # Runtime VC administration: free one GPU pair from `research`, give it to a new VC `spare`.
        cells = [{"cellType": "GPU-NODE.GPU-PAIR", "cellNumber": 1}]
        await self.admin("virtual-clusters", "research", method="PUT", body={"virtualCells": cells})
        await self.admin("virtual-clusters", "spare", method="PUT", body={"virtualCells": cells}, expect=201)
        self.tokens["owner"] = await self.login("owner")
        self.tokens["other"] = await self.login("other")
        self.tokens["app"] = (await self.api.json("tokens", "application", method="POST", body={}, expect=201,
                                                  headers=self.auth("owner")))["token"]
        r = await self.api.request("jobs", method="POST", body=self.make_job("mjob", ["echo matrix"]),
                                   headers={**self.auth("owner"), "Content-Type": "text/yaml"})
        assert r.code == 202, r.body
        self.key = json.loads(r.body)["job"]
        assert self.key == "owner~mjob"
        await self.api.wait_state(self.key, "SUCCEEDED")

    def auth(self, who: str) -> dict[str, str]:
        if who == "admin":
            return {}  # the Jupyter server's token (jp_fetch's default): the lab user, an admin
        if who == "anonymous":
            return {"Authorization": ""}
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def fresh_token(self, who: str) -> str:
        """A new bearer token of `who` (the admin's from its Jupyter identity)."""
        if who in ("anonymous", "app"):
            return "0123456789ab"
        r = await self.api.json("tokens", method="POST", body={}, expect=201, headers=self.auth(who))
        return r["token"]

    async def request_for(self, template: str, method: str, who: str):
        """(path parts, body, headers) for one call; fresh resources where the call consumes one."""
        headers = self.auth(who)
        body = None
        values = {"job": self.key, "jobAttemptId": "0", "taskRoleName": "worker", "taskIndex": "0",
                  "taskAttemptId": "0", "logName": "all", "username": "owner", "groupname": "team",
                  "vc": "default", "storage": "data"}
        t, m = template.removeprefix(API_PREFIX.rstrip("/")), method.upper()
        params = None
        if m == "DELETE" and t == "/users/{username}":
            values["username"] = "victim"
        elif m == "DELETE" and t == "/groups/{groupname}":
            values["groupname"] = "victimgroup"
        elif m == "DELETE" and t == "/storages/{storage}":
            values["storage"] = "victimstore"
        elif m == "DELETE" and t == "/virtual-clusters/{vc}":
            values["vc"] = "spare"
        elif t == "/tokens/{token}":
            token = await self.fresh_token(who)
            values["token"] = token.split("_")[1] if token.startswith("oxp_") else token
        elif t == "/authn/basic/logout" and who not in ("anonymous", "app"):
            headers = {"Authorization": f"Bearer {await self.fresh_token(who)}"}
        elif m == "DELETE" and t == "/jobs/{job}/tag":
            await self.admin("jobs", self.key, "tag", method="PUT", body={"value": "keep"})
        if t == "/jobs" and m == "POST":
            body = self.make_job(f"j{uuid.uuid4().hex[:8]}", ["true"])
            headers = {**headers, "Content-Type": "text/yaml"}
        elif t == "/authn/basic/login":
            body = {"username": "owner", "password": "owner-password"}
        elif t.endswith("/executionType"):
            body = {"value": "STOP"}
        elif t.endswith("/tag"):
            body = {"value": "keep"}
        elif m == "POST" and t == "/users":
            body = {"username": f"u{uuid.uuid4().hex[:8]}", "password": "secret-password"}
        elif m == "PUT" and t == "/users/{username}":
            body = {"email": "owner@example.org"}
        elif m == "POST" and t == "/groups":
            body = {"groupname": f"g{uuid.uuid4().hex[:8]}"}
        elif m == "PUT" and t == "/groups/{groupname}":
            body = {"description": "the team"}
        elif m == "POST" and t == "/storages":
            body = {"name": f"s{uuid.uuid4().hex[:8]}"}
        elif m == "PUT" and t == "/virtual-clusters/{vc}":
            body = {"maxJobsPerUser": 5}
        elif t.startswith("/tokens") and m == "POST":
            body = {}
        elif t == "/convert/notebook":
            body = {"path": NOTEBOOK}
        elif t == "/storages/{storage}/files":
            params = {"path": "" if m == "GET" else f"{who}/note.txt"}
            body = b"hello" if m == "PUT" else None
        missing = set(re.findall(r"\{(\w+)\}", template)) - set(values)
        if missing or any(g in template for g in GENERIC):
            return None
        path = re.sub(r"\{(\w+)\}", lambda mm: values[mm.group(1)], template)
        rest = path[len(API_PREFIX):]
        parts = tuple(rest.split("/")) if rest else ("/",)
        return parts, body, headers, params


def expected(level: Level, who: str, template: str = "") -> str:
    """'ok' (a 2xx), or the status the credential or resource rule gives."""
    if level is Level.PUBLIC:
        return "ok"
    if who == "anonymous":
        return "401"
    if who == "app" and level in (Level.USER, Level.ADMIN, Level.SELF, Level.STORAGE):
        return "403"
    if level is Level.ADMIN:
        return "ok" if who == "admin" else "403"
    if level is Level.SELF:
        return "ok" if who in ("owner", "admin") else "403"  # the path names `owner`
    if level in (Level.JOB_READ, Level.JOB_OWNER):
        # visibility `own`: owner's job does not exist for `other` (the list just leaves it out)
        return "404" if who == "other" and "{job}" in template else "ok"  # visibility `own`: the job does not exist for `other`
    if level is Level.STORAGE:
        return "403" if who == "other" else "ok"  # `data` is granted to `team` only
    return "ok"  # ANY, USER, JOB_SUBMIT (VC default is granted to group default)


async def test_authorization_matrix_covers_every_route(api, contract, make_job, openxpu_app):
    assert openxpu_app.job_visibility == "own"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('matrix')")])
    nbformat.write(nb, Path(openxpu_app.serverapp.root_dir) / NOTEBOOK)
    world = World(api, make_job)
    await world.build()
    failures, generic = [], []
    for template, method, _op in contract.operations():
        level = authz.rule(method, template)
        assert level is not None, f"{method.upper()} {template} has no row in openxpu_server/services/authz.py"
        for who in WHO:
            built = await world.request_for(template, method, who)
            if built is None:  # another feature's route: the credential part only
                generic.append(template)
                r = await api.request(*_example_parts(template), method=method.upper(), body=b"{}"
                                      if method.upper() in ("POST", "PUT") else None,
                                      headers=world.auth(who), check=False)
                want = expected(level, who)
                if want in ("401", "403") and str(r.code) != want or want not in ("401", "403") and r.code in (401, 403):
                    failures.append(f"{method.upper()} {template} as {who} ({level.value}): {r.code}, "
                                    f"expected {want if want in ('401', '403') else 'not 401/403'}")
                continue
            parts, body, headers, params = built
            r = await api.request(*parts, method=method.upper(), body=body, headers=headers, params=params)
            want = expected(level, who, template)
            ok = 200 <= r.code < 300 if want == "ok" else str(r.code) == want
            if not ok:
                failures.append(f"{method.upper()} {template} as {who} ({level.value}): {r.code} "
                                f"{r.body[:200]!r}, expected {want}")
    assert not failures, "\n".join(failures)
    # Only other features' routes were checked generically: every route of ours got exact expectations.
    assert all(any(g in t for g in GENERIC) for t in generic), sorted(set(generic))

    # What the calls did is what the table allowed: the victims are gone, owner's job is stopped
    # only by owner/app/admin (it had finished), and `other` still sees no job of owner's.
    await api.error("users", "victim", status=404, code="NoUserError")
    await api.error("groups", "victimgroup", status=404, code="NoGroupError")
    await api.error("virtual-clusters", "spare", status=404, code="NoVirtualClusterError")
    listed = await api.json("jobs", headers=world.auth("other"))
    assert all(j["username"] == "other" for j in listed) and listed


def _example_parts(template: str) -> tuple[str, ...]:
    path = template
    for name in re.findall(r"\{(\w+)\}", template):
        path = path.replace("{" + name + "}", "x")
    return tuple(path[len(API_PREFIX):].split("/"))


# ---------------------------------------------------------------------------------------- Jupyter's authorizer
SEEN: list[tuple[str, str]] = []
READONLY_TEST = "test_jupyter_authorizer_still_applies"


class ReadOnlyAuthorizer(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        SEEN.append((action, resource))
        return action == "read"


@pytest.fixture
def jp_server_config(jp_server_config, request):
    if request.node.name == READONLY_TEST:
        jp_server_config["ServerApp"]["authorizer_class"] = ReadOnlyAuthorizer
    return jp_server_config


async def test_jupyter_authorizer_still_applies(api, openxpu_app, make_job):
    """Every verb also goes through the server's authorizer on resource `openxpu` (here: reads only)."""
    SEEN.clear()
    key = openxpu_app.engine.jobs.submit("alice", make_job("seeded", ["sleep 60"]))  # behind the API's back

    assert [j["name"] for j in await api.list()] == ["seeded"]
    assert (await api.detail(key))["name"] == "seeded"
    assert await api.json("info")
    assert await api.json("virtual-clusters")

    await api.error("jobs", method="POST", body=make_job("denied"), status=403, code="ForbiddenUserError")
    await api.error("jobs", key, "executionType", method="PUT", body={"value": "STOP"}, status=403,
                    code="ForbiddenUserError")
    await api.error("jobs", key, "tag", method="PUT", body={"value": "t"}, status=403, code="ForbiddenUserError")
    await api.error("jobs", key, "tag", method="DELETE", body={"value": "t"}, status=403, code="ForbiddenUserError")
    await api.error("users", method="POST", body={"username": "zed", "password": "secret-pw"}, status=403,
                    code="ForbiddenUserError")

    assert ("read", "openxpu") in SEEN and ("write", "openxpu") in SEEN
    assert {resource for _, resource in SEEN} == {"openxpu"}
    detail = await api.detail(key)
    assert detail["tags"] == [] and detail["jobStatus"]["executionType"] == "START"
    await api.error("users", "zed", status=404, code="NoUserError")
