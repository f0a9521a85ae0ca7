"""Authentication on every documented route, and the catch-all for unknown API paths."""

from __future__ import annotations

import json
import re

from openxpu_server.services import authz

# Path parameters of the OpenAPI document, filled with an existing job's values.
PARAMS = {
    "jobAttemptId": "0",
    "taskRoleName": "worker",
    "taskIndex": "0",
    "taskAttemptId": "0",
    "logName": "all",
    "username": "alice",
    "groupname": "default",
    "vc": "default",
    "storage": "data",
    "token": "0123456789ab",
}
API_PREFIX = "/openxpu/api/v2/"


def fill(template: str, key: str) -> tuple[str, ...]:
    """Path segments after the API prefix for a documented path, parameters filled in."""
    values = {**PARAMS, "job": key}
    missing = set(re.findall(r"\{(\w+)\}", template)) - set(values)
    if missing:  # another feature's parameters: any value reaches the route, the 401 comes first
        values.update({name: "x" for name in missing})
    path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
    assert path.startswith(API_PREFIX), path
    rest = path[len(API_PREFIX) :]
    return (*rest.split("/"), "/") if rest.endswith("/") or not rest else tuple(rest.split("/"))


def write_body(template: str, method: str, make_job) -> str | dict | None:
    """A valid body for each write operation, so that only the credentials are wrong."""
    if method == "post":
        return make_job("sneaky")
    if template.endswith("/executionType"):
        return {"value": "STOP"}
    if template.endswith("/tag"):
        return {"value": "keep"}
    return None


async def test_every_documented_route_needs_a_token(api, contract, make_job):
    await api.json("storages", method="POST", body={"name": "data"}, expect=201)
    key = await api.submit(make_job("guarded", ["echo guarded"]))
    await api.json("jobs", key, "tag", method="PUT", body={"value": "keep"})
    await api.wait_state(key, "SUCCEEDED")

    operations = list(contract.operations())
    assert len(operations) >= 13
    for template, method, _op in operations:
        if authz.rule(method, template) is authz.Level.PUBLIC:
            continue  # password login needs no credential (tests/accounts covers it)
        parts = fill(template, key)
        body = write_body(template, method, make_job)
        if method == "get" and not any(g in template for g in ("/marketplace/", "/outputs")):
            # With the token the filled-in path is a real resource (so the 401 below is about auth).
            r = await api.request(*parts)
            assert r.code == 200, (template, r.code, r.body[:300])
        for authorization in ("", "token not-the-token", "Bearer not-a-jwt"):
            r = await api.request(
                *parts, method=method.upper(), body=body, headers={"Authorization": authorization}
            )
            where = f"{method.upper()} {template} with Authorization {authorization!r}"
            assert r.code in (401, 403), (where, r.code, r.body[:300])
            assert r.headers["Content-Type"].startswith("application/json"), where
            error = json.loads(r.body)
            assert set(error) == {"code", "message"}, (where, error)
            assert error["code"] == ("UnauthorizedUserError" if r.code == 401 else "ForbiddenUserError"), (
                where
            )
            assert error["message"], where

    # Nothing the unauthenticated writes asked for happened.
    assert await api.names() == ["guarded"]
    assert [u["username"] for u in await api.json("users")] == ["alice"]
    detail = await api.detail(key)
    assert detail["tags"] == ["keep"]
    assert detail["jobStatus"]["executionType"] == "START"


async def test_token_in_query_is_accepted(api, jp_serverapp):
    token = jp_serverapp.identity_provider.token
    r = await api.request("info", headers={"Authorization": ""}, params={"token": token})
    assert r.code == 200 and json.loads(r.body)["user"] == "alice"


async def test_unknown_api_paths_are_404_no_api_error(api, make_job):
    key = await api.submit(make_job("present"))
    for parts in (("nope",), ("jobs", key, "nope"), ("jobs", key, "ssh"), ("users", "alice", "x"), ("vcs",)):
        message = await api.error(*parts, status=404, code="NoApiError")
        assert "/".join(parts) in message
    await api.error("nope", method="POST", body="{}", status=404, code="NoApiError")
    await api.error("nope", method="PUT", body="{}", status=404, code="NoApiError")
    await api.error("nope", method="DELETE", status=404, code="NoApiError")
    r = await api._fetch("openxpu", "api", "v1", "jobs", raise_error=False)
    assert r.code == 404 and json.loads(r.body)["code"] == "NoApiError"
    # A known path with a method it does not have.
    await api.error("jobs", key, method="PATCH", body="{}", status=405, code="NoApiError")
    await api.error("jobs", method="DELETE", status=405, code="NoApiError")
    await api.error("info", method="POST", body="{}", status=405, code="NoApiError")
    # Unknown paths need a token too.
    await api.error("nope", headers={"Authorization": ""}, status=401, code="UnauthorizedUserError")
