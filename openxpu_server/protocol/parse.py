"""Protocol v2 text or mapping -> `JobSpec`: load, schema, references, defaults, deployments, templates.

The order is the rest-server's submit pipeline (openpai.md §1.7, steps 1-4). Every rejection is one
`InvalidProtocolError(field, rule)`; nothing else escapes for any input, because the API turns
whatever this raises into the 400 the user reads.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Hashable, Mapping
from typing import Any

import yaml

from ..errors import InvalidProtocolError
from .render import render
from .schema import PREREQUISITE_TYPES, format_path, schema_error
from .spec import DEFAULT_PRIORITY_CLASS, JobSpec, TaskRoleSpec

DEFAULT_SHM_MB = 512
DEFAULT_VIRTUAL_CLUSTER = "default"
DEFAULT_PORTS = ("ssh", "http")  # every task gets one of each unless it declares the label
MASK = "******"

# A protocol is a small document. These bounds stop alias bombs (`&a [*a, *a, ...]`) and
# self-referencing structures before they reach the validator.
MAX_DEPTH = 64
MAX_NODES = 200_000
# libyaml recurses in C while composing: ~50k nested flow brackets crash the interpreter outright,
# so bound flow nesting (and, through the size, block nesting) before handing the text over.
MAX_TEXT_CHARS = 4 * 1024 * 1024
MAX_BRACKET_DEPTH = 1_000
_BRACKETS = re.compile(r"[\[\]{}]")

_PURE_REFERENCE = re.compile(r"<%\s*\$secrets\.[^%]*%>")
_ROLE_REFERENCES = (
    ("dockerImage", "dockerimage"),
    ("script", "script"),
    ("data", "data"),
    ("output", "output"),
)


# ----------------------------------------------------------------------------------------------
# Loading


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML loader with string keys that rejects duplicate keys, as js-yaml (so OpenPAI) does.

    PyYAML silently keeps the last duplicate, which would let a second `worker:` role replace the
    first one without a word.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)  # raises the usual ConstructorError
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        self.flatten_mapping(node)  # `<<:` pairs first, then the explicit ones, which may override them
        first_explicit = len(node.value) - explicit
        mapping: dict[str, Any] = {}
        explicit_names: set[str] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable) or isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found unhashable key",
                    key_node.start_mark,
                )
            # Keys are strings in JSON and js-yaml; converting here keeps `1:` and `true:` apart.
            name = _key(key, [])
            if position >= first_explicit:
                if name in explicit_names:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {name!r}",
                        key_node.start_mark,
                    )
                explicit_names.add(name)
            mapping[name] = self.construct_object(value_node, deep=deep)
        return mapping


class _DuplicateKeyError(ValueError):
    pass


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "syntax error"
        if mark is not None:
            return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
        return str(problem)
    return str(error).strip() or type(error).__name__


def _check_size(text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidProtocolError("", f"the document is too large (more than {MAX_TEXT_CHARS} characters)")
    depth = 0
    for bracket in _BRACKETS.findall(text):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        if depth > MAX_BRACKET_DEPTH:
            raise InvalidProtocolError(
                "", f"invalid YAML/JSON: nested deeper than {MAX_BRACKET_DEPTH} brackets"
            )


def _parse_text(text: str) -> Any:
    _check_size(text)
    stripped = text.lstrip()
    json_error: str | None = None
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except _DuplicateKeyError as exc:
            json_error = str(exc)
        except json.JSONDecodeError as exc:
            json_error = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        except (ValueError, RecursionError) as exc:
            json_error = str(exc) or type(exc).__name__
        # Not JSON after all: YAML flow style (`{a: 1}`) also starts with a brace.
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidProtocolError("", f"invalid YAML/JSON: {json_error or _yaml_problem(exc)}") from None
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        # e.g. an integer literal beyond Python's int-from-string limit, or absurd nesting.
        detail = json_error or str(exc) or type(exc).__name__
        raise InvalidProtocolError("", f"invalid YAML/JSON: {detail}") from None


def _key(key: Any, path: list[Any]) -> str:
    """Mapping keys become strings, as they are in JSON and in js-yaml."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, (int, float)):
        return str(key)
    if isinstance(key, (datetime.date, datetime.datetime)):
        return key.isoformat()
    raise InvalidProtocolError(format_path(path), f"unsupported mapping key of type {type(key).__name__}")


def _normalize(value: Any) -> Any:
    """A JSON-shaped deep copy: string keys, lists, dates as ISO text; bounded depth and size."""
    budget = [MAX_NODES]

    def walk(node: Any, path: list[Any]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise InvalidProtocolError("", f"the document is too large (more than {MAX_NODES} values)")
        if len(path) > MAX_DEPTH:
            raise InvalidProtocolError(
                format_path(path[:8]) + "...", f"nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(node, float) and not math.isfinite(node):
            # NaN/Infinity are not JSON: the store (PostgreSQL above all) would refuse them later.
            raise InvalidProtocolError(format_path(path), "must be a finite number")
        if node is None or isinstance(node, (str, bool, int, float)):
            return node
        if isinstance(node, Mapping):
            result: dict[str, Any] = {}
            for raw_key, item in node.items():
                key = _key(raw_key, path)
                if key in result:
                    raise InvalidProtocolError(format_path([*path, key]), "duplicate key")
                result[key] = walk(item, [*path, key])
            return result
        if isinstance(node, (list, tuple)):
            return [walk(item, [*path, index]) for index, item in enumerate(node)]
        if isinstance(node, (datetime.date, datetime.datetime)):
            return node.isoformat()
        raise InvalidProtocolError(format_path(path), f"unsupported value of type {type(node).__name__}")

    return walk(value, [])


def _describe(value: Any) -> str:
    if value is None:
        return "an empty document"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def load_text(text: str | bytes) -> dict[str, Any]:
    """Parse YAML or JSON text into a JSON-shaped dict (string keys); syntax errors carry line/column."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidProtocolError("", f"invalid YAML/JSON: not UTF-8 text (byte {exc.start})") from None
    if not isinstance(text, str):
        raise InvalidProtocolError("", f"the protocol must be YAML or JSON text, not {type(text).__name__}")
    data = _normalize(_parse_text(text))
    if not isinstance(data, dict):
        raise InvalidProtocolError(
            "", f"the protocol must be a mapping at the top level, not {_describe(data)}"
        )
    return data


def _load(source: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return _normalize(source)  # a private copy: parse_job never mutates the caller's dict
    if isinstance(source, (str, bytes, bytearray)):
        return load_text(source)
    raise InvalidProtocolError(
        "", f"the protocol must be YAML/JSON text or a mapping, not {type(source).__name__}"
    )


# ----------------------------------------------------------------------------------------------
# Semantic checks (what JSON schema cannot say: references between parts of the document)


def _known(names: Mapping[str, Any] | list[str]) -> str:
    listed = list(names)
    return ", ".join(listed) if listed else "none"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _index_prerequisites(protocol: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{type: {name: item}}; a name may repeat across types but not within one."""
    index: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in PREREQUISITE_TYPES}
    items = protocol.get("prerequisites") or []
    for position, item in enumerate(items):
        by_name = index[item["type"]]
        if item["name"] in by_name:
            raise InvalidProtocolError(
                f"prerequisites[{position}].name", f"duplicate {item['type']} prerequisite '{item['name']}'"
            )
        by_name[item["name"]] = item
    every = {name for by_name in index.values() for name in by_name}
    for position, item in enumerate(items):
        for slot, required in enumerate(item.get("require") or []):
            if required not in every:
                raise InvalidProtocolError(
                    f"prerequisites[{position}].require[{slot}]",
                    f"'{required}' is not a prerequisite (known: {_known(sorted(every))})",
                )
    return index


def _index_deployments(protocol: dict[str, Any]) -> dict[str, dict[str, Any]]:
    roles = protocol["taskRoles"]
    index: dict[str, dict[str, Any]] = {}
    for position, item in enumerate(protocol.get("deployments") or []):
        if item["name"] in index:
            raise InvalidProtocolError(
                f"deployments[{position}].name", f"duplicate deployment '{item['name']}'"
            )
        for role in item["taskRoles"]:
            if role not in roles:
                raise InvalidProtocolError(
                    f"deployments[{position}].taskRoles.{role}",
                    f"not a task role of this job (known: {_known(roles)})",
                )
        index[item["name"]] = item
    chosen = (protocol.get("defaults") or {}).get("deployment")
    if chosen is not None and chosen not in index:
        raise InvalidProtocolError(
            "defaults.deployment", f"'{chosen}' is not a deployment (known: {_known(index)})"
        )
    return index


def _check_role_references(
    role_name: str, role: dict[str, Any], prerequisites: dict[str, dict[str, dict[str, Any]]]
) -> None:
    for field, kind in _ROLE_REFERENCES:
        if field in role and role[field] not in prerequisites[kind]:
            raise InvalidProtocolError(
                f"taskRoles.{role_name}.{field}",
                f"'{role[field]}' is not {_article(kind)} {kind} prerequisite (known: {_known(prerequisites[kind])})",
            )
    every = {name for by_name in prerequisites.values() for name in by_name}
    for slot, name in enumerate(role.get("prerequisites") or []):
        if name not in every:
            raise InvalidProtocolError(
                f"taskRoles.{role_name}.prerequisites[{slot}]",
                f"'{name}' is not a prerequisite (known: {_known(sorted(every))})",
            )


def _check_extras(protocol: dict[str, Any]) -> None:
    roles = protocol["taskRoles"]
    extras = protocol.get("extras") or {}
    hived = extras.get("hivedScheduler") or {}
    for role, config in (hived.get("taskRoles") or {}).items():
        field = f"extras.hivedScheduler.taskRoles.{role}"
        if role not in roles:
            raise InvalidProtocolError(field, f"not a task role of this job (known: {_known(roles)})")
        if config.get("skuType") is not None and config.get("pinnedCellId") is not None:
            raise InvalidProtocolError(field, "skuType and pinnedCellId are mutually exclusive")
    for position, plugin in enumerate(extras.get("com.microsoft.pai.runtimeplugin") or []):
        for slot, role in enumerate(plugin.get("taskroles") or []):
            if role not in roles:
                raise InvalidProtocolError(
                    f"extras.com.microsoft.pai.runtimeplugin[{position}].taskroles[{slot}]",
                    f"'{role}' is not a task role of this job (known: {_known(roles)})",
                )


# ----------------------------------------------------------------------------------------------
# Defaults and rendering


def _completion(role_name: str, role: dict[str, Any], instances: int) -> tuple[int, int]:
    """FC completion thresholds: null/0 -> defaults, -1 kept (disabled), positives within instances."""
    completion = role.get("completion") or {}
    effective: dict[str, int] = {}
    for key, default in (("minFailedInstances", 1), ("minSucceededInstances", instances)):
        value = completion.get(key)
        value = default if value in (None, 0) else int(value)
        if value > instances:
            raise InvalidProtocolError(
                f"taskRoles.{role_name}.completion.{key}",
                f"must be at most instances ({instances}), or -1 to disable (got {value})",
            )
        effective[key] = value
    role["completion"] = {**completion, **effective}
    return effective["minFailedInstances"], effective["minSucceededInstances"]


def _commands(
    role_name: str,
    role: dict[str, Any],
    deployment: dict[str, Any] | None,
    context: dict[str, Any],
) -> list[str]:
    commands = list(role["commands"])
    hooks = ((deployment or {}).get("taskRoles") or {}).get(role_name) or {}
    commands = [*hooks.get("preCommands", []), *commands, *hooks.get("postCommands", [])]
    rendered = [render(command, context).strip() for command in commands]
    if not any(rendered):
        raise InvalidProtocolError(
            f"taskRoles.{role_name}.commands", "must have at least one non-empty command"
        )
    return rendered


def _render_auth(protocol: dict[str, Any], secrets: dict[str, Any]) -> None:
    """`$secrets` are rendered in dockerimage auth only; commands keep them for the runtime."""
    context = {"$secrets": secrets}
    for item in protocol.get("prerequisites") or []:
        auth = item.get("auth") if item.get("type") == "dockerimage" else None
        if auth:
            item["auth"] = {key: render(value, context) for key, value in auth.items()}


def _role_spec(
    role_name: str,
    role: dict[str, Any],
    prerequisites: dict[str, dict[str, dict[str, Any]]],
    deployment: dict[str, Any] | None,
    parameters: dict[str, Any],
    hived: dict[str, Any],
) -> TaskRoleSpec:
    """Apply the role's defaults in place (so `JobSpec.protocol` shows them) and build its spec."""
    instances = int(role.get("instances", 1))
    role["instances"] = instances
    min_failed, min_succeeded = _completion(role_name, role, instances)
    role["taskRetryCount"] = int(role.get("taskRetryCount", 0))

    options = role.setdefault("extraContainerOptions", {})
    options["shmMB"] = int(options.get("shmMB", DEFAULT_SHM_MB))

    resources = role["resourcePerInstance"]
    for key in ("cpu", "memoryMB", "gpu"):
        resources[key] = int(resources[key])
    ports = {label: int(count) for label, count in (resources.get("ports") or {}).items()}
    for label in DEFAULT_PORTS:
        ports.setdefault(label, 1)
    resources["ports"] = ports

    # $script/$data/$output are role-scoped; $secrets is deliberately absent (rendered in-container).
    context: dict[str, Any] = {"$parameters": parameters}
    for field in ("script", "data", "output"):
        if field in role:
            context[f"${field}"] = prerequisites[field][role[field]]
    commands = _commands(role_name, role, deployment, context)
    role["commands"] = commands

    role_hived = dict(hived.get(role_name) or {})
    if "skuNum" in role_hived:
        role_hived["skuNum"] = int(role_hived["skuNum"])
    return TaskRoleSpec(
        name=role_name,
        instances=instances,
        min_failed_instances=min_failed,
        min_succeeded_instances=min_succeeded,
        task_retry_count=role["taskRetryCount"],
        docker_image=prerequisites["dockerimage"][role["dockerImage"]]["uri"],
        cpu=resources["cpu"],
        memory_mb=resources["memoryMB"],
        gpu=resources["gpu"],
        ports=dict(ports),
        shm_mb=options["shmMB"],
        commands=list(commands),
        prerequisites=list(role.get("prerequisites") or []),
        hived=role_hived,
    )


def parse_job(source: str | bytes | Mapping[str, Any]) -> JobSpec:
    """Validate a protocol v2 job and return its normalized spec, or raise one InvalidProtocolError.

    `JobSpec.protocol` is the effective protocol: defaults filled in, the default deployment merged
    into the commands (and `defaults.deployment` dropped, so parsing it again is a no-op), commands
    rendered, dockerimage auth rendered; secrets intact. Mask them before showing it to anyone.
    """
    protocol = _load(source)
    error = schema_error(protocol)
    if error is not None:
        raise error
    for section in ("parameters", "secrets", "extras", "defaults"):
        if protocol.get(section) is None:
            protocol[section] = {}

    prerequisites = _index_prerequisites(protocol)
    deployments = _index_deployments(protocol)
    roles: dict[str, dict[str, Any]] = protocol["taskRoles"]
    for role_name, role in roles.items():
        _check_role_references(role_name, role, prerequisites)
    _check_extras(protocol)

    defaults = protocol["defaults"]
    deployment_name = defaults.pop("deployment", None)
    deployment = deployments.get(deployment_name) if deployment_name is not None else None
    defaults.setdefault("virtualCluster", DEFAULT_VIRTUAL_CLUSTER)
    protocol["jobRetryCount"] = int(protocol.get("jobRetryCount", 0))

    parameters: dict[str, Any] = protocol["parameters"]
    secrets: dict[str, Any] = protocol["secrets"]
    extras: dict[str, Any] = protocol["extras"]
    hived_config = extras.get("hivedScheduler") or {}
    hived_roles = hived_config.get("taskRoles") or {}

    task_roles = {
        name: _role_spec(name, role, prerequisites, deployment, parameters, hived_roles)
        for name, role in roles.items()
    }
    _render_auth(protocol, secrets)

    return JobSpec(
        name=protocol["name"],
        virtual_cluster=defaults["virtualCluster"],
        priority_class=hived_config.get("jobPriorityClass") or DEFAULT_PRIORITY_CLASS,
        job_retry_count=protocol["jobRetryCount"],
        gang_allocation=extras.get("gangAllocation", True),
        task_roles=task_roles,
        docker_images={name: spec.docker_image for name, spec in task_roles.items()},
        parameters=parameters,
        secrets=secrets,
        extras=extras,
        protocol=protocol,
    )


# ----------------------------------------------------------------------------------------------
# Masking


def mask_secrets(protocol: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `protocol` whose top-level `secrets` values read "******" (keys kept).

    Docker registry passwords are masked too unless they are still a `<% $secrets.x %>` reference:
    in a parsed protocol they hold the rendered secret. Only what changes is copied; the caller's
    dict is left untouched.
    """
    masked = dict(protocol)
    secrets = masked.get("secrets")
    if isinstance(secrets, Mapping):
        masked["secrets"] = {key: MASK for key in secrets}
    elif secrets not in (None, "", [], {}):
        masked["secrets"] = MASK  # not a mapping (an invalid protocol): hide it whole
    prerequisites = masked.get("prerequisites")
    if isinstance(prerequisites, list):
        masked["prerequisites"] = [_mask_auth(item) for item in prerequisites]
    return masked


def _mask_auth(item: Any) -> Any:
    auth = item.get("auth") if isinstance(item, Mapping) else None
    if not isinstance(auth, Mapping) or "password" not in auth:
        return item
    password = auth["password"]
    if isinstance(password, str) and _PURE_REFERENCE.fullmatch(password.strip()):
        return item
    return {**item, "auth": {**auth, "password": MASK}}


class _ConfigDumper(yaml.SafeDumper):
    """Multi-line strings (folded commands, scripts) as `|` blocks, long lines unwrapped."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ConfigDumper.add_representer(str, _represent_str)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML for people: key order kept, multi-line strings (commands, scripts) as `|` blocks, long
    lines unwrapped (the config read back, exit summaries, notebook jobs)."""
    return yaml.dump(
        dict(data), Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=2**16
    )


def masked_config_text(original: str | bytes | Mapping[str, Any]) -> str:
    """The job config as users read it back: YAML in the author's key order, secrets masked."""
    return dump_yaml(mask_secrets(_load(original)))
