"""REST API tests: a real jupyter-server with the `openxpu` extension, its engine and the local backend.

The server declares 8 CPUs, 16 GB and 2 GPUs (no GPU is needed: the GPU jobs here only run `echo`)
and acts for user `alice`.

Every response the `api` fixture receives is checked against `openxpu_server/api/openapi.yaml`
(`Contract.check`): the status must be documented for that route and method, the content type must
be one documented for that status, and a JSON body must validate against the documented schema. So
each test here is also a contract test of the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tornado.httpclient import HTTPResponse

import openxpu_server

# pytest_plugins is declared in tests/conftest.py: pytest allows it only in the top-level conftest.

USER = "alice"
API = ("openxpu", "api", "v2")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
SPEC_PATH = Path(openxpu_server.__file__).parent / "api" / "openapi.yaml"
SPEC_URI = "urn:openxpu:openapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


# ---------------------------------------------------------------------------------------- server
@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {
            "jpserver_extensions": {"openxpu_server": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
        "OpenXPU": {
            "data_dir": str(tmp_path / "openxpu-data"),
            "layout_file": str(Path(__file__).with_name("layout.yaml")),
            "poll_interval": 0.05,
            "stop_grace_seconds": 2,
            "cpus": 8,
            "memory_mb": 16384,
            "gpus": 2,
            "username": USER,
        },
    }


@pytest.fixture
def openxpu_app(jp_serverapp, jp_asyncio_loop):
    """The `OpenXPU` extension app, with its engine loops running.

    pytest-jupyter never runs `ServerApp.start_ioloop`, so the extensions' async start hooks (where
    the engine starts) are not called for us: run them as `ServerApp._post_start` does. At teardown,
    jobs still running are stopped (their processes outlive the engine otherwise).
    """
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())
    (ext,) = (
        a for a in jp_serverapp.extension_manager.extension_apps["openxpu_server"] if a.name == "openxpu"
    )
    assert ext.engine is not None and ext.engine.running, "the OpenXPU engine did not start"
    yield ext
    engine = ext.engine
    if engine is None or not engine.running:
        return
    from openxpu_server.services.jobs import parse_list_query

    live = [
        j["username"] + "~" + j["name"]
        for j in engine.jobs.list(parse_list_query({}))
        if j["state"] not in TERMINAL
    ]
    for key in live:
        engine.jobs.set_execution_type(key, "STOP")
    deadline = time.monotonic() + 15
    while live and time.monotonic() < deadline:
        live = [k for k in live if engine.jobs.job_state(k)[0] not in TERMINAL]
        engine.wait_for_change(0.1)


# ---------------------------------------------------------------------------------------- contract
class Contract:
    """The OpenAPI document, with helpers to find an operation and validate a response against it."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.registry = Registry().with_resource(
            SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
        )
        routes = []
        for template, item in spec["paths"].items():
            formats = {}
            for op in [item, *(item[m] for m in METHODS if m in item)]:
                for p in op.get("parameters", []):
                    p = self.deref(p["$ref"][1:])[1] if "$ref" in p else p
                    if p["in"] == "path":
                        formats[p["name"]] = self._segment_regex(p.get("schema", {}))
            regex = "".join(
                formats.get(part[1:-1], "[^/]+") if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^}]+\})", template)
            )
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            routes.append((literal, template, re.compile(regex.rstrip("/") + "/?")))
        self._routes = [(t, rx) for _, t, rx in sorted(routes, key=lambda r: -r[0])]

    @staticmethod
    def _segment_regex(schema: dict[str, Any]) -> str:
        """What a documented path parameter looks like in a URL (its pattern, or digits for integers)."""
        if "pattern" in schema:
            return "(?:" + schema["pattern"].removeprefix("^").removesuffix("$") + ")"
        if schema.get("type") == "integer":
            return "[0-9]+"
        return "[^/]+"

    # -- lookups -------------------------------------------------------------------------------
    def operations(self):
        """(path template, method, operation) of every operation."""
        for template, item in self.spec["paths"].items():
            for method in METHODS:
                if method in item:
                    yield template, method, item[method]

    def template_of(self, path: str) -> str | None:
        for template, rx in self._routes:
            if rx.fullmatch(path):
                return template
        return None

    def deref(self, pointer: str) -> tuple[str, Any]:
        """The node at a JSON pointer into the spec, following `$ref`s; returns (final pointer, node)."""
        node: Any = self.spec
        for part in pointer.lstrip("/").split("/") if pointer else []:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        while isinstance(node, dict) and "$ref" in node:
            pointer = node["$ref"][1:]
            return self.deref(pointer)
        return pointer, node

    @staticmethod
    def escape(token: str) -> str:
        return token.replace("~", "~0").replace("/", "~1")

    def validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at `pointer` (refs resolved against the whole document)."""
        return Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)

    def schema_validator(self, name: str) -> Draft202012Validator:
        return self.validator(f"/components/schemas/{name}")

    # -- the check -----------------------------------------------------------------------------
    def check(self, method: str, path: str, response: HTTPResponse) -> None:
        """Assert `response` (to `method path`, path relative to the base URL) is what the document says."""
        method = method.lower()
        status = str(response.code)
        ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        where = f"{method.upper()} {path} -> {status}"
        template = self.template_of(path)
        if template is None or method not in self.spec["paths"][template]:
            # Not a documented operation: the catch-all (404) or an unimplemented method (405); both
            # still need a Jupyter identity first (401).
            assert status in ("401", "404", "405"), (
                f"{where}: undocumented route answered {status}: {response.body[:500]!r}"
            )
            name = "UnauthorizedUserError" if status == "401" else "NoApiError"
            self.schema_validator(name).validate(json.loads(response.body))
            return
        op_pointer = f"/paths/{self.escape(template)}/{method}"
        responses = self.spec["paths"][template][method]["responses"]
        assert status in responses, (
            f"{where}: status not documented ({sorted(responses)}): {response.body[:500]!r}"
        )
        resp_pointer, resp = self.deref(f"{op_pointer}/responses/{status}")
        content = resp.get("content")
        if not content:
            return
        assert ctype in content, f"{where}: content type {ctype!r} not documented ({sorted(content)})"
        if ctype != "application/json" or not response.body:
            return
        schema_pointer = f"{resp_pointer}/content/{self.escape(ctype)}/schema"
        errors = sorted(self.validator(schema_pointer).iter_errors(json.loads(response.body)), key=str)
        assert not errors, f"{where}: body does not match {schema_pointer}:\n" + "\n".join(
            f"- {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10]
        )


@pytest.fixture(scope="session")
def openapi_spec() -> dict[str, Any]:
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def contract(openapi_spec) -> Contract:
    return Contract(openapi_spec)


# ---------------------------------------------------------------------------------------- jobs
def job_yaml(
    name: str,
    commands: list[str] | None = None,
    *,
    instances: int = 1,
    gpu: int = 0,
    vc: str | None = None,
    secrets: dict[str, Any] | None = None,
    ports: dict[str, int] | None = None,
    priority: str | None = None,
    retries: int | None = None,
    as_dict: bool = False,
) -> Any:
    """A protocol v2 job with one role `worker`, as YAML text (or the mapping with `as_dict`)."""
    resources: dict[str, Any] = {"cpu": 1, "memoryMB": 128, "gpu": gpu}
    if ports:
        resources["ports"] = ports
    job: dict[str, Any] = {
        "protocolVersion": 2,
        "name": name,
        "type": "job",
        "prerequisites": [{"type": "dockerimage", "name": "img", "uri": "python:3.11-slim"}],
        "taskRoles": {
            "worker": {
                "instances": instances,
                "dockerImage": "img",
                "resourcePerInstance": resources,
                "commands": commands or ["echo hello"],
            }
        },
    }
    if secrets:
        job["secrets"] = secrets
    if retries is not None:
        job["jobRetryCount"] = retries
    if vc:
        job["defaults"] = {"virtualCluster": vc}
    if priority:
        job["extras"] = {"hivedScheduler": {"jobPriorityClass": priority}}
    return job if as_dict else yaml.safe_dump(job, sort_keys=False)


@pytest.fixture
def make_job():
    """`job_yaml` as a fixture (test modules cannot import this conftest)."""
    return job_yaml


# ---------------------------------------------------------------------------------------- client
class Api:
    """Async client over `jp_fetch` for `/openxpu/api/v2/...`, checking every response against the contract."""

    def __init__(self, fetch, base_url: str, contract: Contract):
        self._fetch = fetch
        self.base_url = base_url
        self.contract = contract

    async def request(
        self,
        *parts: str,
        method: str = "GET",
        body: str | bytes | dict | list | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> HTTPResponse:
        """Any request; never raises on HTTP errors. `parts` are path segments after `/openxpu/api/v2/`."""
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        kw: dict[str, Any] = {"method": method, "headers": headers, "params": params, "raise_error": False}
        if body is not None:
            kw["body"] = body
            if method == "DELETE":
                kw["allow_nonstandard_methods"] = True
        kw.update(kwargs)
        response = await self._fetch(*API, *parts, **kw)
        if check:
            path = urllib.parse.urlsplit(response.request.url).path
            assert path.startswith(self.base_url), (path, self.base_url)
            self.contract.check(method, "/" + path[len(self.base_url) :], response)
        return response

    async def json(self, *parts: str, expect: int = 200, **kwargs: Any) -> Any:
        r = await self.request(*parts, **kwargs)
        assert r.code == expect, (
            f"{kwargs.get('method', 'GET')} {'/'.join(parts)}: {r.code} {r.body[:2000]!r}"
        )
        return json.loads(r.body)

    async def error(self, *parts: str, status: int, code: str, **kwargs: Any) -> str:
        """Assert an OpenPAI error `{code, message}` with `status`; returns the message."""
        r = await self.request(*parts, **kwargs)
        assert r.code == status, (
            f"{'/'.join(parts)}: expected {status} {code}, got {r.code} {r.body[:2000]!r}"
        )
        assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
        body = json.loads(r.body)
        assert set(body) == {"code", "message"}, body
        assert body["code"] == code, body
        assert isinstance(body["message"], str) and body["message"], body
        return body["message"]

    async def submit(self, text: str | dict, *, content_type: str | None = None) -> str:
        """POST a job (YAML text, or a mapping sent as JSON); returns its id."""
        if isinstance(text, dict):
            body: str = json.dumps(text)
            content_type = content_type or "application/json"
        else:
            body = text
            content_type = content_type or "text/yaml"
        reply = await self.json(
            "jobs", method="POST", body=body, headers={"Content-Type": content_type}, expect=202
        )
        return reply["job"]

    async def detail(self, key: str) -> dict:
        return await self.json("jobs", key)

    async def list(self, **params: Any) -> Any:
        return await self.json("jobs", params={k: str(v) for k, v in params.items()})

    async def names(self, **params: Any) -> list[str]:
        return [j["name"] for j in await self.list(**params)]

    async def wait_state(
        self, key: str, states: tuple[str, ...] | str = TERMINAL, timeout: float = 30
    ) -> dict:
        """Poll the job detail until `jobStatus.state` is in `states`; returns the detail."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        detail: dict = {}
        while time.monotonic() < deadline:
            detail = await self.detail(key)
            if detail["jobStatus"]["state"] in states:
                return detail
            await asyncio.sleep(0.05)
        events = await self.json("jobs", key, "events")
        raise AssertionError(
            f"{key} did not reach {states} in {timeout}s: now {detail.get('jobStatus', {}).get('state')}; "
            f"events {[(e['reason'], e['message']) for e in events['data']]}"
        )

    async def wait_tasks_running(self, key: str, count: int = 1, timeout: float = 30) -> dict:
        """Poll until the job is RUNNING with `count` tasks RUNNING; returns the detail."""
        deadline = time.monotonic() + timeout
        detail: dict = {}
        while time.monotonic() < deadline:
            detail = await self.detail(key)
            tasks = [t for r in detail["taskRoles"].values() for t in r["taskStatuses"]]
            if (
                detail["jobStatus"]["state"] == "RUNNING"
                and sum(t["taskState"] == "RUNNING" for t in tasks) >= count
            ):
                return detail
            if detail["jobStatus"]["state"] in TERMINAL:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key}: {count} task(s) not RUNNING in {timeout}s: {detail.get('jobStatus')}")

    @staticmethod
    def task_parts(key: str, attempt: int = 0, role: str = "worker", index: int = 0) -> tuple[str, ...]:
        return ("jobs", key, "attempts", str(attempt), "taskRoles", role, "taskIndex", str(index), "attempts")

    def log_parts(
        self, key: str, name: str, attempt: int = 0, task_attempt: int = 0, **kw: Any
    ) -> tuple[str, ...]:
        return (*self.task_parts(key, attempt, **kw), str(task_attempt), "logs", name)


@pytest.fixture
def api(jp_fetch, jp_base_url, openxpu_app, contract) -> Api:
    return Api(jp_fetch, jp_base_url, contract)
