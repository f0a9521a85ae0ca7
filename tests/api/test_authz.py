"""Authorization: every verb goes through the server's authorizer on resource `openxpu`.

This module runs the server with an authorizer that allows reading only.
"""

from __future__ import annotations

import pytest
from jupyter_server.auth.authorizer import Authorizer

SEEN: list[tuple[str, str]] = []


class ReadOnlyAuthorizer(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        SEEN.append((action, resource))
        return action == "read"


@pytest.fixture
def jp_server_config(jp_server_config):
    jp_server_config["ServerApp"]["authorizer_class"] = ReadOnlyAuthorizer
    return jp_server_config


async def test_writes_are_forbidden_reads_allowed(api, openxpu_app, make_job):
    SEEN.clear()
    # Seed a job behind the API's back: submitting is a write.
    key = openxpu_app.engine.jobs.submit("alice", make_job("seeded", ["sleep 60"]))

    assert [j["name"] for j in await api.list()] == ["seeded"]
    assert (await api.detail(key))["name"] == "seeded"
    assert await api.json("info")

    await api.error("jobs", method="POST", body=make_job("denied"), status=403, code="ForbiddenUserError")
    await api.error(
        "jobs",
        key,
        "executionType",
        method="PUT",
        body={"value": "STOP"},
        status=403,
        code="ForbiddenUserError",
    )
    await api.error(
        "jobs", key, "tag", method="PUT", body={"value": "t"}, status=403, code="ForbiddenUserError"
    )
    await api.error(
        "jobs", key, "tag", method="DELETE", body={"value": "t"}, status=403, code="ForbiddenUserError"
    )

    assert ("read", "openxpu") in SEEN and ("write", "openxpu") in SEEN
    assert {resource for _, resource in SEEN} == {"openxpu"}
    assert [j["name"] for j in await api.list()] == ["seeded"]
    detail = await api.detail(key)
    assert detail["tags"] == [] and detail["jobStatus"]["executionType"] == "START"
