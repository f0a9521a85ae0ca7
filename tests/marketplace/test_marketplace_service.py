"""Marketplace rules on a real store (SQLite, and PostgreSQL in CI): visibility, ownership, search,
stars, uses and the built-in templates loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from openxpu_server.api.base import Caller
from openxpu_server.errors import ForbiddenUserError, InvalidParametersError, InvalidProtocolError
from openxpu_server.services.marketplace import ConflictItemError, MarketplaceService, NoItemError
from openxpu_server.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
JOB = """protocolVersion: 2
name: tpl
type: job
prerequisites: [{type: dockerimage, name: i, uri: python:3.11}]
taskRoles:
  worker:
    dockerImage: i
    resourcePerInstance: {cpu: 1, memoryMB: 64, gpu: 0}
    commands: [echo hi]
"""
ALICE = Caller("alice", frozenset({"default", "physics"}))
BOB = Caller("bob", frozenset({"default"}))
CAROL = Caller("carol", frozenset({"default", "physics"}))
ADMIN = Caller("root", frozenset({"admingroup"}), admin=True)


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.dispose()


@pytest.fixture
def market(store) -> MarketplaceService:
    return MarketplaceService(store, ROOT / "examples" / "marketplace")


def names(result: dict) -> list[str]:
    return [i["name"] for i in result["items"]]


def test_builtins_are_loaded_once_and_a_deleted_one_stays_deleted(store):
    m = MarketplaceService(store, ROOT / "examples" / "marketplace")
    assert len(m.seed_builtins()) >= 6
    found = m.search(BOB, {"author": "openxpu", "order": "name"})
    assert "hello-distributed" in names(found) and found["totalCount"] >= 6
    item = found["items"][0]
    assert item["source"] == "builtin" and item["editable"] is False
    with pytest.raises(ForbiddenUserError):
        m.delete(BOB, item["id"])
    m.delete(ADMIN, item["id"])
    again = MarketplaceService(store, ROOT / "examples" / "marketplace")  # a server restart
    assert again.seed_builtins() == []
    assert item["name"] not in names(again.search(BOB, {"author": "openxpu"}))


def test_visibility_public_private_and_groups(market):
    market.create(ALICE, {"name": "open", "protocol": JOB})
    market.create(ALICE, {"name": "mine", "protocol": JOB, "visibility": "private"})
    shared = market.create(ALICE, {"name": "lab", "protocol": JOB, "visibility": "groups", "groups": ["physics"]})
    q = {"author": "alice", "order": "name"}
    assert names(market.search(ALICE, q)) == ["lab", "mine", "open"]
    assert names(market.search(CAROL, q)) == ["lab", "open"]
    assert names(market.search(BOB, q)) == ["open"]
    assert names(market.search(ADMIN, q)) == ["lab", "mine", "open"]
    with pytest.raises(NoItemError):  # not visible reads as not there
        market.get(BOB, shared["id"])
    assert market.get(CAROL, shared["id"])["protocol"] == JOB
    with pytest.raises(ForbiddenUserError):  # visible but not hers
        market.update(CAROL, shared["id"], {"summary": "x"})
    updated = market.update(ALICE, shared["id"], {"visibility": "public"})
    assert updated["visibility"] == "public" and "lab" in names(market.search(BOB, q))
    with pytest.raises(InvalidParametersError, match="^groups: required"):
        market.update(ALICE, shared["id"], {"visibility": "groups", "groups": []})


def test_search_filters_order_and_paging(market):
    market.create(ALICE, {"name": "alpha", "protocol": JOB, "tags": ["vision", "gpu"], "categories": ["CV"],
                          "summary": "Detect cats"})
    market.create(BOB, {"name": "beta", "protocol": JOB, "tags": ["nlp"], "categories": ["NLP"],
                        "description": "A *transformer* for text"})
    q = {"source": "user"}
    assert names(market.search(BOB, {**q, "keyword": "CATS"})) == ["alpha"]
    assert names(market.search(BOB, {**q, "keyword": "transformer"})) == ["beta"]
    assert names(market.search(BOB, {**q, "keyword": "visi"})) == ["alpha"]  # tags match too
    assert names(market.search(BOB, {**q, "tag": "nlp"})) == ["beta"]
    assert names(market.search(BOB, {**q, "category": "CV"})) == ["alpha"]
    assert names(market.search(BOB, {**q, "order": "name,DESC"})) == ["beta", "alpha"]
    page = market.search(BOB, {**q, "order": "name", "limit": "1", "offset": "1"})
    assert names(page) == ["beta"] and page["totalCount"] == 2
    assert {"vision", "gpu", "nlp"} <= set(market.labels(BOB, "tags"))
    assert {"CV", "NLP"} <= set(market.labels(BOB, "categories"))
    for args, field in (({"order": "stars"}, "order"), ({"limit": "0"}, "limit"), ({"visibility": "x"}, "visibility"),
                        ({"starred": "maybe"}, "starred"), ({"offset": "-1"}, "offset")):
        with pytest.raises(InvalidParametersError, match=f"^{field}:"):
            market.search(BOB, args)


def test_stars_and_uses_are_counted(market):
    item = market.create(ALICE, {"name": "counted", "protocol": JOB})
    assert market.star(BOB, item["id"], True)["starCount"] == 1
    assert market.star(BOB, item["id"], True)["starCount"] == 1  # idempotent
    assert market.star(CAROL, item["id"], True)["starCount"] == 2
    assert market.star(BOB, item["id"], False)["starred"] is False
    assert names(market.search(CAROL, {"starred": "true"})) == ["counted"]
    assert "counted" not in names(market.search(BOB, {"starred": "true"}))
    assert market.use(BOB, item["id"])["useCount"] == 1
    used = market.use(CAROL, item["id"])
    assert used["useCount"] == 2 and used["protocol"] == JOB
    top = market.search(BOB, {"order": "useCount,DESC"})["items"][0]
    assert top["name"] == "counted" and top["useCount"] == 2 and top["starCount"] == 1


def test_bad_input_names_the_field(market):
    cases = [
        ({"protocol": JOB}, InvalidParametersError, "name: required"),
        ({"name": "x"}, InvalidParametersError, "protocol: required"),
        ({"name": "x", "protocol": "protocolVersion: 2\nname: x\ntype: job\n"}, InvalidProtocolError, "protocol"),
        ({"name": "x", "protocol": JOB, "tags": "a,b"}, InvalidParametersError, "tags: must be a list"),
        ({"name": "x", "protocol": JOB, "tags": ["ok", ""]}, InvalidParametersError, r"tags\[1\]"),
        ({"name": "x", "protocol": JOB, "visibility": "secret"}, InvalidParametersError, "visibility: one of"),
        ({"name": "x", "protocol": JOB, "visibility": "groups"}, InvalidParametersError, "groups: required"),
        ({"name": "x", "protocol": JOB, "notebook": []}, InvalidParametersError, "notebook:"),
        ({"name": "x", "protocol": JOB, "stars": 5}, InvalidParametersError, "stars: unknown field"),
    ]
    for body, error, message in cases:
        with pytest.raises(error, match=f"^{message}"):
            market.create(ALICE, body)
    market.create(ALICE, {"name": "dup", "protocol": JOB})
    with pytest.raises(ConflictItemError):
        market.create(ALICE, {"name": "dup", "protocol": JOB})
    market.create(BOB, {"name": "dup", "protocol": JOB})  # names are per author
