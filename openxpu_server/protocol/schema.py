"""JSON schema of OpenPAI job protocol v2 and the translation of its errors into one readable rule.

The schema follows the OpenPAI rest-server (`additionalProperties: false` at the top level, in each task
role, resourcePerInstance, completion, extraContainerOptions, dockerimage prerequisites, defaults and
deployments) plus the `extras` keys the engine consumes. It is compiled once at import: validation sits
on the submit path.

Schema nodes may carry two annotations that jsonschema ignores and `schema_error` reads:
`x-message` (the rule for any failure of this value) and `x-messages` ({keyword: rule}).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ..errors import InvalidProtocolError

INT_MAX = 2**31 - 1  # counts beyond int32 are mistakes, and they must fit the store's integer columns

JOB_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"
IDENTIFIER_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"  # task role names and port labels: C identifiers
PRIORITY_CLASSES = ("prod", "test", "oppo", "crit")
PREREQUISITE_TYPES = ("dockerimage", "script", "output", "data")

_NAME_RULE = f"must match {JOB_NAME_PATTERN} (letters, digits, _ and -)"


def _int(minimum: int, *, nullable: bool = False, rule: str | None = None) -> dict[str, Any]:
    """An integer in [minimum, INT_MAX]; bool is not an integer (jsonschema agrees)."""
    node: dict[str, Any] = {
        "type": ["integer", "null"] if nullable else "integer",
        "minimum": minimum,
        "maximum": INT_MAX,
    }
    if rule:
        node["x-messages"] = {"type": rule, "minimum": rule, "not": rule}
    return node


def _strings(min_items: int = 0) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
    if min_items:
        node["minItems"] = min_items
    return node


_NAME: dict[str, Any] = {
    "type": "string",
    "pattern": JOB_NAME_PATTERN,
    "minLength": 1,
    "maxLength": 255,
    "x-messages": {"pattern": _NAME_RULE, "minLength": _NAME_RULE},
}

_PROTOCOL_VERSION: dict[str, Any] = {"enum": [2, "2"], "x-message": 'must be 2 or "2"'}

# Common fields of every component (job, prerequisite, deployment) in protocol v2.
_BASE_PROPERTIES: dict[str, Any] = {
    "protocolVersion": _PROTOCOL_VERSION,
    "name": _NAME,
    "version": {"type": ["string", "number"]},
    "contributor": {"type": "string"},
    "description": {"type": "string"},
}

_PREREQUISITE_BASE: dict[str, Any] = {
    **_BASE_PROPERTIES,
    "type": {"enum": list(PREREQUISITE_TYPES)},
    "plugin": {"type": "string"},
    "require": _strings(),
    "failurePolicy": {"enum": ["fail", "ignore"]},
}


def _if_type(types: Sequence[str], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"required": ["type"], "properties": {"type": {"enum": list(types)}}}, "then": then}


_PREREQUISITE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "type"],
    "properties": _PREREQUISITE_BASE,
    "allOf": [
        # dockerimage: closed set of keys, uri required.
        _if_type(
            ["dockerimage"],
            {
                "required": ["uri"],
                "properties": {
                    **_BASE_PROPERTIES,
                    "type": {},
                    "uri": {"type": "string", "minLength": 1},
                    "auth": {
                        "type": "object",
                        "properties": {
                            "username": {"type": "string"},
                            "password": {"type": "string"},
                            "registryuri": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
        ),
        # script/output: uri is a string; plugin-backed ones (`plugin: ...`) may omit it. Extra keys are
        # plugin parameters, allowed as upstream.
        _if_type(["script", "output"], {"properties": {"uri": {"type": "string"}}}),
        _if_type(["data"], {"properties": {"uri": {**_strings(1)}}}),
        {"if": {"not": {"required": ["plugin"]}}, "then": {"required": ["uri"]}},
    ],
}

_COMPLETION_COUNT = _int(-1, nullable=True, rule="must be an integer >= -1 or null")

_TASK_ROLE: dict[str, Any] = {
    "type": "object",
    "required": ["dockerImage", "resourcePerInstance", "commands"],
    "properties": {
        "protocolVersion": _PROTOCOL_VERSION,
        "instances": _int(1),
        "completion": {
            "type": ["object", "null"],
            "properties": {
                "minFailedInstances": _COMPLETION_COUNT,
                "minSucceededInstances": _COMPLETION_COUNT,
            },
            "additionalProperties": False,
        },
        "taskRetryCount": _int(0),
        "dockerImage": {"type": "string"},
        "data": {"type": "string"},
        "output": {"type": "string"},
        "script": {"type": "string"},
        "prerequisites": _strings(),
        "extraContainerOptions": {
            "type": "object",
            "properties": {"shmMB": _int(0), "infiniband": {"type": "boolean"}},
            "additionalProperties": False,
        },
        "resourcePerInstance": {
            "type": "object",
            "required": ["cpu", "memoryMB", "gpu"],
            "properties": {
                "cpu": _int(0),
                "memoryMB": _int(0),
                "gpu": _int(0),
                "ports": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {
                        "pattern": IDENTIFIER_PATTERN,
                        "x-message": f"port label must match {IDENTIFIER_PATTERN} (a C identifier)",
                    },
                    "additionalProperties": _int(0),
                },
            },
            "additionalProperties": False,
        },
        "commands": {**_strings(1), "x-messages": {"minItems": "must have at least one command"}},
    },
    "additionalProperties": False,
}

_DEPLOYMENT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "taskRoles"],
    "properties": {
        **_BASE_PROPERTIES,
        "taskRoles": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "pattern": IDENTIFIER_PATTERN,
                "x-message": f"task role name must match {IDENTIFIER_PATTERN} (a C identifier)",
            },
            "additionalProperties": {
                "type": "object",
                "properties": {"preCommands": _strings(1), "postCommands": _strings(1)},
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}

# extras is free-form (plugins and UIs keep their own keys there); only the keys the engine consumes
# are typed.
_EXTRAS: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {
        "gangAllocation": {"type": "boolean"},
        "submitFrom": {"type": "string"},
        "hivedScheduler": {
            "type": "object",
            "properties": {
                "jobPriorityClass": {"enum": list(PRIORITY_CLASSES)},
                "gangReleaseEnable": {"type": "boolean"},
                "lazyPreemptionEnable": {"type": "boolean"},
                "ignoreK8sSuggestedNodes": {"type": "boolean"},
                "taskRoles": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "skuType": {"type": ["string", "null"]},
                            "skuNum": _int(1),
                            "pinnedCellId": {"type": ["string", "null"]},
                            "affinityGroupName": {"type": ["string", "null"]},
                        },
                    },
                },
            },
        },
        "com.microsoft.pai.runtimeplugin": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["plugin"],
                "properties": {
                    "plugin": {"type": "string", "minLength": 1},
                    "parameters": {"type": ["object", "null"]},
                    "failurePolicy": {"enum": ["fail", "ignore"]},
                    "taskroles": _strings(),
                },
            },
        },
        "storages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}, "mountPath": {"type": "string"}},
            },
        },
        "jobStatusChangeNotification": {"type": "object", "additionalProperties": {"type": "boolean"}},
    },
}

PROTOCOL_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "OpenPAI job protocol v2",
    "type": "object",
    "required": ["protocolVersion", "name", "type", "taskRoles"],
    "properties": {
        **_BASE_PROPERTIES,
        "type": {"const": "job", "x-message": "must be 'job'"},
        "prerequisites": {"type": "array", "minItems": 1, "items": _PREREQUISITE},
        "parameters": {"type": ["object", "null"]},
        "secrets": {"type": ["object", "null"]},
        "jobRetryCount": {
            **_int(-2, rule="must be an integer >= 0 (or -2 to disable the fancy retry policy)"),
            "not": {"const": -1},
        },
        "taskRoles": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "pattern": IDENTIFIER_PATTERN,
                "x-message": f"task role name must match {IDENTIFIER_PATTERN} (a C identifier)",
            },
            "additionalProperties": _TASK_ROLE,
            "x-messages": {"minProperties": "must define at least one task role"},
        },
        "deployments": {"type": "array", "minItems": 1, "items": _DEPLOYMENT},
        "defaults": {
            "type": ["object", "null"],
            "properties": {
                "virtualCluster": {"type": "string", "minLength": 1},
                "deployment": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "extras": _EXTRAS,
    },
    "additionalProperties": False,
}

Draft202012Validator.check_schema(PROTOCOL_SCHEMA)
VALIDATOR = Draft202012Validator(PROTOCOL_SCHEMA)


# ----------------------------------------------------------------------------------------------
# Error translation


def format_path(parts: Iterable[Any]) -> str:
    """`['prerequisites', 0, 'uri']` -> `prerequisites[0].uri` (the form every rejection uses)."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "boolean": "a boolean (true/false)",
    "null": "null",
}


def _type_rule(schema: dict[str, Any]) -> str:
    types = schema.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    words = [_TYPE_WORDS.get(t, t) for t in names if t != "null"]
    rule = "must be " + " or ".join(words)
    if "integer" in names and "minimum" in schema:
        rule += f" >= {schema['minimum']}"
    if "null" in names:
        rule += " or null"
    return rule


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _allowed(schema: dict[str, Any]) -> str:
    names = list(schema.get("properties", {}))
    return f" (allowed: {', '.join(names)})" if names else ""


def _translate(error: ValidationError) -> tuple[str, str]:
    """One jsonschema error -> (dotted field, human rule)."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator

    if "propertyNames" in error.relative_schema_path:
        # The failing instance is the key itself; report it as part of the path.
        rule = schema.get("x-message") or f"name must match {schema.get('pattern', '')}"
        return format_path([*path, str(error.instance)]), rule
    if keyword == "required":
        missing = next((k for k in error.validator_value if k not in error.instance), None)
        return format_path([*path, missing] if missing is not None else path), "required"
    if keyword == "additionalProperties":
        known = set(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        noun = "field" if len(extra) == 1 else "fields"
        shown = ", ".join(repr(str(k)) for k in extra)
        return format_path(path), f"unknown {noun} {shown}{_allowed(schema)}"

    messages = schema.get("x-messages") or {}
    rule = messages.get(keyword) or schema.get("x-message")
    if rule:
        return format_path(path), rule
    if keyword == "type":
        rule = _type_rule(schema)
    elif keyword == "minimum":
        rule = _type_rule(schema) if "type" in schema else f"must be >= {error.validator_value}"
    elif keyword == "maximum":
        rule = f"must be <= {error.validator_value}"
    elif keyword == "pattern":
        rule = f"must match {error.validator_value}"
    elif keyword == "minLength":
        rule = (
            "must not be empty"
            if error.validator_value == 1
            else f"must be at least {error.validator_value} characters"
        )
    elif keyword == "maxLength":
        rule = f"must be at most {error.validator_value} characters"
    elif keyword in ("minItems", "minProperties"):
        rule = (
            "must not be empty"
            if error.validator_value == 1
            else f"must have at least {error.validator_value} entries"
        )
    elif keyword == "enum":
        rule = "must be one of: " + ", ".join(_show(v) for v in error.validator_value)
    elif keyword == "const":
        rule = f"must be {_show(error.validator_value)}"
    else:
        rule = error.message
    return format_path(path), rule


def _rank(error: ValidationError) -> int:
    """Shallower errors first: a missing section says more than a bad value deep inside it."""
    depth = len(error.absolute_path)
    if error.validator == "required" or "propertyNames" in error.relative_schema_path:
        depth += 1
    return depth


def schema_error(instance: Any) -> InvalidProtocolError | None:
    """Validate against the protocol schema; return the single most relevant error, or None."""
    best: ValidationError | None = None
    best_rank = 0
    for error in VALIDATOR.iter_errors(instance):
        while error.context:  # no anyOf/oneOf in our schema, but stay safe if one is added
            error = min(error.context, key=_rank)
        rank = _rank(error)
        if best is None or rank < best_rank:
            best, best_rank = error, rank
    if best is None:
        return None
    field, rule = _translate(best)
    return InvalidProtocolError(field, rule)
