"""The marketplace REST routes on a real jupyter-server; every response is checked against openapi.yaml."""

from __future__ import annotations

import yaml


async def test_builtins_search_get_use_and_submit(api):
    found = await api.json("marketplace", "items", params={"author": "openxpu", "order": "name"})
    assert found["totalCount"] >= 6
    by_name = {i["name"]: i for i in found["items"]}
    assert "protocol" not in by_name["hello-distributed"]
    item = await api.json("marketplace", "items", by_name["hello-distributed"]["id"])
    assert item["description"].startswith("# Hello, distributed") and item["notebook"] is None
    nb_item = await api.json("marketplace", "items", by_name["notebook-job"]["id"])
    assert nb_item["hasNotebook"] and nb_item["notebook"]["cells"]
    used = await api.json("marketplace", "items", item["id"], "use", method="POST")
    assert used["useCount"] == 1 and used["protocol"] == item["protocol"]
    job = yaml.safe_load(used["protocol"])
    job["name"] = "from-template"
    key = await api.submit(job)
    detail = await api.wait_state(key, timeout=60)
    assert detail["jobStatus"]["state"] == "SUCCEEDED"
    assert "distributed" in await api.json("marketplace", "tags")
    assert "Getting started" in await api.json("marketplace", "categories")


async def test_create_update_star_delete(api):
    protocol = ("protocolVersion: 2\nname: t\ntype: job\nprerequisites: [{type: dockerimage, name: i, uri: x}]\n"
                "taskRoles: {w: {dockerImage: i, resourcePerInstance: {cpu: 1, memoryMB: 64, gpu: 0}, commands: [echo]}}\n")
    body = {"name": "my-template", "protocol": protocol, "tags": ["mine"], "summary": "Mine", "visibility": "groups",
            "groups": ["default"]}
    created = await api.json("marketplace", "items", method="POST", body=body, expect=201)
    assert created["author"] == "alice" and created["editable"] and created["groups"] == ["default"]
    iid = created["id"]
    updated = await api.json("marketplace", "items", iid, method="PUT", body={"summary": "Better", "tags": ["a", "b"]})
    assert updated["summary"] == "Better" and updated["tags"] == ["a", "b"] and updated["updatedTime"] >= created["updatedTime"]
    starred = await api.json("marketplace", "items", iid, "star", method="PUT")
    assert starred["starred"] and starred["starCount"] == 1
    mine = await api.json("marketplace", "items", params={"starred": "true"})
    assert [i["id"] for i in mine["items"]] == [iid]
    unstarred = await api.json("marketplace", "items", iid, "star", method="DELETE")
    assert not unstarred["starred"] and unstarred["starCount"] == 0
    await api.error("marketplace", "items", method="POST", body=body, status=409, code="ConflictMarketplaceItemError")
    await api.json("marketplace", "items", iid, method="DELETE")
    await api.error("marketplace", "items", iid, status=404, code="NoMarketplaceItemError")


async def test_bad_input_is_a_named_400_never_a_500(api):
    msg = await api.error("marketplace", "items", method="POST", body={"name": "x"}, status=400,
                          code="InvalidParametersError")
    assert msg.startswith("protocol:")
    msg = await api.error("marketplace", "items", method="POST", status=400, code="InvalidProtocolError",
                          body={"name": "x", "protocol": "protocolVersion: 2\nname: bad name\ntype: job\n"})
    assert msg.startswith("protocol.")
    msg = await api.error("marketplace", "items", method="POST", body=b"{not json", status=400,
                          code="InvalidParametersError", headers={"Content-Type": "application/json"})
    assert msg.startswith("body:")
    msg = await api.error("marketplace", "items", params={"limit": "many"}, status=400, code="InvalidParametersError")
    assert msg.startswith("limit:")
    await api.error("marketplace", "items", "nope", status=404, code="NoMarketplaceItemError")
    await api.error("marketplace", "items", "nope", "use", method="POST", status=404, code="NoMarketplaceItemError")
