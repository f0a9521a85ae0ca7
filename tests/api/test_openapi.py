"""openapi.yaml is valid, matches `all_routes()` route for route and method for method, describes
real responses, and docs/api.md is generated from it."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from openxpu_server import errors
from openxpu_server.api import handlers
from openxpu_server.api.base import OpenXPUHandler
from openxpu_server.api.routes import all_routes

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
CATCH_ALL = handlers.NotFoundHandler


# ---------------------------------------------------------------------------------------- helpers
def regex_to_template(pattern: str) -> tuple[str, list[tuple[str, str]]]:
    """A tornado route regex -> (`/a/{name}/b` template, [(group name, group regex)]).

    Handles what routes use: literal text, escaped characters, groups (named or not, nested, with
    character classes) and an optional last character (`/?`). Anything else is an error, so a new
    regex construct makes this test fail loudly instead of comparing the wrong thing.
    """
    p = pattern.removeprefix("^").removesuffix("$")
    out: list[str] = []
    groups: list[tuple[str, str]] = []
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            out.append(p[i + 1])
            i += 2
        elif c == "(":
            depth, j, in_class = 0, i, False
            while True:
                ch = p[j]
                if ch == "\\":
                    j += 2
                    continue
                if in_class:
                    in_class = ch != "]"
                elif ch == "[":
                    in_class = True
                elif ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            group = p[i : j + 1]
            m = re.fullmatch(r"\(\?P<(\w+)>(.*)\)", group, re.S)
            name, body = (m.group(1), m.group(2)) if m else (f"_{len(groups)}", group[1:-1])
            groups.append((name, body))
            out.append("{" + name + "}")
            i = j + 1
        elif c == "?":
            assert out and len(out[-1]) == 1, f"unsupported optional construct in {pattern}"
            out.pop()  # an optional character (the trailing `/?`): the template omits it
            i += 1
        elif c in "*+.[]|{}^$":
            raise AssertionError(f"unsupported regex construct {c!r} outside a group in route {pattern!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out), groups


def normalize(template: str) -> str:
    """Compare templates modulo parameter names and a trailing slash."""
    return re.sub(r"\{[^}]+\}", "{}", template).rstrip("/")


def implemented_methods(cls: type) -> set[str]:
    """HTTP methods the handler class itself defines (not APIHandler's OPTIONS, not the 405 default)."""
    own = [k for k in cls.__mro__ if issubclass(k, OpenXPUHandler) and k is not OpenXPUHandler]
    return {m for m in METHODS if any(m in vars(k) for k in own)}


def routes() -> list[tuple[str, type]]:
    out = [(pattern, cls) for pattern, cls, *_ in all_routes() if cls is not CATCH_ALL]
    assert len(out) == len(all_routes()) - 1, "exactly one catch-all route expected"
    assert all_routes()[-1][1] is CATCH_ALL, "the catch-all route must be last"
    return out


def path_params(spec: dict[str, Any], contract, template: str, method: str) -> list[dict[str, Any]]:
    item = spec["paths"][template]
    params = []
    for p in item.get("parameters", []) + item[method].get("parameters", []):
        params.append(contract.deref(p["$ref"][1:])[1] if "$ref" in p else p)
    return [p for p in params if p["in"] == "path"]


def first_route(path: str) -> type | None:
    """The handler tornado would pick for `path` (first match in order, anchored like tornado)."""
    for pattern, cls, *_ in all_routes():
        if re.match(pattern if pattern.endswith("$") else pattern + "$", path):
            return cls
    return None


def walk_refs(node: Any, at: str = "#"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield at, value
            else:
                yield from walk_refs(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_refs(value, f"{at}/{i}")


def load_gen_api():
    spec = importlib.util.spec_from_file_location("openxpu_docs_gen_api", ROOT / "docs" / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------- parity
def test_regex_to_template_understands_the_routes():
    assert regex_to_template(r"/openxpu/api/v2/?") == ("/openxpu/api/v2", [])
    template, groups = regex_to_template(r"/x/(?P<key>[^/~]+~[^/]+)/y/(?P<n>(?:[0-9]|[a-z])+)/(\w+)")
    assert template == "/x/{key}/y/{n}/{_2}"
    assert groups == [("key", "[^/~]+~[^/]+"), ("n", "(?:[0-9]|[a-z])+"), ("_2", r"\w+")]
    with pytest.raises(AssertionError):
        regex_to_template(r"/x/.*")


def test_every_route_is_documented_with_its_methods(openapi_spec):
    documented = {normalize(t): t for t in openapi_spec["paths"]}
    assert len(documented) == len(openapi_spec["paths"]), (
        "two documented paths differ only by parameter names"
    )
    for pattern, cls in routes():
        template, _ = regex_to_template(pattern)
        assert normalize(template) in documented, f"route {pattern} ({cls.__name__}) is not in openapi.yaml"
        doc_template = documented[normalize(template)]
        doc_methods = {m for m in METHODS if m in openapi_spec["paths"][doc_template]}
        assert doc_methods == implemented_methods(cls), (
            f"{doc_template}: documented {sorted(doc_methods)}, {cls.__name__} implements {sorted(implemented_methods(cls))}"
        )


def test_every_documented_operation_is_routed(openapi_spec, contract):
    by_template = {normalize(regex_to_template(p)[0]): (p, cls) for p, cls in routes()}
    for template, method, _op in contract.operations():
        assert normalize(template) in by_template, (
            f"{method.upper()} {template} has no route in default_handlers"
        )
        pattern, cls = by_template[normalize(template)]
        assert method in implemented_methods(cls), (
            f"{method.upper()} {template}: {cls.__name__} has no {method}()"
        )

        # Filled with the documented examples, the path reaches that handler (not an earlier route or
        # the catch-all), and each example matches the route's group in the same position.
        params = path_params(openapi_spec, contract, template, method)
        examples = {p["name"]: str(p["example"]) for p in params}
        assert set(re.findall(r"\{(\w+)\}", template)) == set(examples), (
            f"{template}: path params vs template"
        )
        concrete = re.sub(r"\{(\w+)\}", lambda m, ex=examples: ex[m.group(1)], template)
        assert first_route(concrete) is cls, (
            f"{concrete} is routed to {first_route(concrete)}, not {cls.__name__}"
        )
        _, groups = regex_to_template(pattern)
        names = re.findall(r"\{(\w+)\}", template)
        assert len(groups) == len(names), (
            f"{template}: {len(names)} documented params, route has {len(groups)} groups"
        )
        for (group_name, group_regex), name in zip(groups, names, strict=True):
            assert re.fullmatch(group_regex, examples[name]), (
                f"{template}: example {name} vs group {group_name}"
            )
        # The handler method takes exactly those arguments.
        signature = inspect.signature(getattr(cls, method))
        assert len(signature.parameters) - 1 == len(groups), f"{cls.__name__}.{method}{signature}"


def test_documented_path_params_agree_with_the_route_regexes(openapi_spec, contract):
    """A value the documented schema accepts reaches the handler; a malformed one never does."""
    by_template = {normalize(regex_to_template(p)[0]): (p, cls) for p, cls in routes()}
    samples = {"integer": ["0", "17"], "string": ["worker", "alice~train", "all"]}
    for template, method, _op in contract.operations():
        pattern, _cls = by_template[normalize(template)]
        _, groups = regex_to_template(pattern)
        for (_, group_regex), param in zip(
            groups, path_params(openapi_spec, contract, template, method), strict=True
        ):
            schema = param["schema"]
            validator = Draft202012Validator(schema)
            for raw in samples[schema["type"]]:
                value: Any = int(raw) if schema["type"] == "integer" else raw
                if validator.is_valid(value) or (schema.get("pattern") and re.search(schema["pattern"], raw)):
                    assert re.fullmatch(group_regex, raw), (
                        f"{template}: {param['name']}={raw!r} documented but not routed"
                    )
            if schema["type"] == "integer":
                assert not re.fullmatch(group_regex, "-1") and not re.fullmatch(group_regex, "x")


# ---------------------------------------------------------------------------------------- validity
def test_document_is_valid_openapi_3_1(openapi_spec):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_spec)
    assert openapi_spec["openapi"].startswith("3.1")


def test_document_structure(openapi_spec, contract):
    """Checks that hold without openapi-spec-validator, plus OpenXPU's own conventions."""
    assert openapi_spec["openapi"].startswith("3.1.")
    assert openapi_spec["info"]["title"] and openapi_spec["info"]["version"]
    schemes = openapi_spec["components"]["securitySchemes"]
    assert schemes["jupyterToken"] == {
        **schemes["jupyterToken"],
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
    }
    assert {"jupyterToken": []} in openapi_spec["security"]

    for at, ref in walk_refs(openapi_spec):
        assert ref.startswith("#/"), f"{at}: only local refs ({ref})"
        contract.deref(ref[1:])  # raises KeyError when dangling

    for name, schema in openapi_spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert isinstance(schema, dict), name

    error_codes = set(openapi_spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    operation_ids = []
    for template, method, op in contract.operations():
        where = f"{method.upper()} {template}"
        assert template.startswith("/openxpu/api/v2/"), where
        operation_ids.append(op["operationId"])
        assert op.get("summary") and op.get("tags"), where
        responses = op["responses"]
        assert {"401", "403"} <= set(responses), f"{where}: every route is authenticated and authorized"
        assert any(s.startswith("2") for s in responses), where
        for status, response in responses.items():
            _, response = contract.deref(f"/paths/{contract.escape(template)}/{method}/responses/{status}")
            assert response.get("description"), f"{where} {status}"
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                codes = load_gen_api().error_codes(openapi_spec, schema)
                assert codes and set(codes) <= error_codes, f"{where} {status}: error schemas {codes}"
        # Path parameters: declared once each, required, and used by the template.
        params = path_params(openapi_spec, contract, template, method)
        names = [p["name"] for p in params]
        assert sorted(names) == sorted(re.findall(r"\{(\w+)\}", template)), where
        assert all(p.get("required") is True and "example" in p for p in params), where
        for p in params:
            Draft202012Validator(p["schema"]).validate(p["example"])
        for body_media in op.get("requestBody", {}).get("content", {}).values():
            assert "schema" in body_media, where
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


def test_error_codes_raised_by_the_api_are_documented(openapi_spec):
    documented = set(openapi_spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    used: set[str] = set()
    for module in (
        "openxpu_server/api/handlers.py",
        "openxpu_server/api/base.py",
        "openxpu_server/services/jobs.py",
    ):
        tree = ast.parse((ROOT / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("errors"):
                for alias in node.names:
                    cls = getattr(errors, alias.name, None)
                    if (
                        isinstance(cls, type)
                        and issubclass(cls, errors.OpenXPUError)
                        and cls is not errors.OpenXPUError
                    ):
                        used.add(cls.code)
    from openxpu_server.api.base import _HTTP_CODES

    used |= set(_HTTP_CODES.values())
    assert used, "found no error classes: did the imports move?"
    assert used <= documented, (
        f"error codes missing from components.schemas.Error: {sorted(used - documented)}"
    )
    for code in documented - {"UnknownError"}:
        assert code in openapi_spec["components"]["schemas"], f"no schema named {code}"


def test_documented_examples_are_valid(openapi_spec, contract):
    body = openapi_spec["paths"]["/openxpu/api/v2/jobs"]["post"]["requestBody"]["content"]["text/yaml"]
    contract.schema_validator("JobProtocol").validate(yaml.safe_load(body["example"]))


# ---------------------------------------------------------------------------------------- real responses
async def test_real_responses_match_the_schemas(api, contract, openapi_spec, make_job):
    """The main routes' answers validate against their schemas (the `api` fixture checks every
    response too; here the schemas are named, and the validators are shown to be non-vacuous)."""
    example = openapi_spec["paths"]["/openxpu/api/v2/jobs"]["post"]["requestBody"]["content"]["text/yaml"][
        "example"
    ]
    r = await api.request("jobs", method="POST", body=example, headers={"Content-Type": "text/yaml"})
    assert r.code == 202, r.body
    contract.schema_validator("SubmitResponse").validate(json.loads(r.body))
    key = json.loads(r.body)["job"]
    running = await api.submit(make_job("running", ["sleep 60"], ports={"extra": 1}))
    await api.wait_tasks_running(running)
    await api.wait_state(key, "SUCCEEDED")

    checks = [
        ("ServerInfo", ("info",), {}),
        ("JobSummary", ("jobs",), {}),
        ("JobListWithTotal", ("jobs",), {"withTotalCount": "true"}),
        ("JobDetail", ("jobs", key), {}),
        ("JobDetail", ("jobs", running), {}),
        ("JobDetail", ("jobs", key, "attempts", "0"), {}),
        ("EventList", ("jobs", key, "events"), {}),
        ("TaskAttempts", api.task_parts(key, index=1), {}),
        ("LogLocations", (*api.task_parts(key), "0", "logs"), {}),
    ]
    for schema, parts, params in checks:
        body = await api.json(*parts, params=params)
        items = body if isinstance(body, list) else [body]
        assert items, parts
        for item in items:
            contract.schema_validator(schema).validate(item)

    # The validators bite: a missing required field, a wrong type, an undocumented field.
    detail = await api.json("jobs", key)
    broken = json.loads(json.dumps(detail))
    del broken["jobStatus"]["state"]
    assert not contract.schema_validator("JobDetail").is_valid(broken)
    broken = json.loads(json.dumps(detail))
    broken["taskRoles"]["worker"]["taskStatuses"][0]["containerExitCode"] = "zero"
    assert not contract.schema_validator("JobDetail").is_valid(broken)
    broken = json.loads(json.dumps(detail))
    broken["taskRoles"]["worker"]["taskStatuses"][0]["surprise"] = 1
    assert not contract.schema_validator("JobDetail").is_valid(broken)
    summary = (await api.list())[0]
    assert not contract.schema_validator("JobSummary").is_valid({**summary, "surprise": 1})
    assert not contract.schema_validator("NoJobError").is_valid({"code": "NoTagError", "message": "x"})

    # Errors validate against the per-code schemas.
    r = await api.request("jobs", "alice~ghost")
    contract.schema_validator("NoJobError").validate(json.loads(r.body))
    r = await api.request("jobs", params={"limit": "0"})
    contract.schema_validator("InvalidParametersError").validate(json.loads(r.body))


# ---------------------------------------------------------------------------------------- docs
def test_api_docs_are_generated_from_the_spec(openapi_spec):
    gen = load_gen_api()
    expected = gen.render(openapi_spec)
    current = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert current == expected, "docs/api.md is out of date: run `python docs/gen_api.py`"
    assert gen.main(["--check"]) == 0
    # Every operation and every error code it can answer shows up in the reference.
    for template, method, _op in (
        (t, m, None) for t, item in openapi_spec["paths"].items() for m in METHODS if m in item
    ):
        assert f"### {method.upper()} `{template}`" in expected
    for code in (
        "ConflictJobError",
        "InvalidProtocolError",
        "NoTagError",
        "NoTaskLogError",
        "UnauthorizedUserError",
    ):
        assert f"[`{code}`]" in expected, code
