#!/usr/bin/env python3
"""Generate docs/api.md from openxpu_server/api/openapi.yaml.

    python docs/gen_api.py           # (re)write docs/api.md
    python docs/gen_api.py --check   # exit 1 when docs/api.md is not what the spec generates

The markdown is a pure function of the YAML (`render(spec)`), so a test can regenerate it in memory
and compare. Do not edit docs/api.md by hand: edit the OpenAPI document and rerun this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "openxpu_server" / "api" / "openapi.yaml"
DOC_PATH = ROOT / "docs" / "api.md"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
SCHEMA_PREFIX = "#/components/schemas/"


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow `$ref`s (local ones only) until a concrete node."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            raise ValueError(f"cannot resolve $ref {ref!r}")
        seen.add(ref)
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _cell(text: Any) -> str:
    """One markdown table cell: single line, pipes escaped."""
    if text is None:
        return ""
    s = " ".join(str(text).split())
    return s.replace("|", "\\|")


def _anchor(name: str) -> str:
    return "schema-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _schema_link(name: str) -> str:
    return f"[{name}](#{_anchor(name)})"


def type_of(schema: Any) -> str:
    """A short human type: `string`, `integer | null`, `[JobSummary](#...)[]`, `"START" | "STOP"`."""
    if not isinstance(schema, dict):
        return ""
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref.startswith(SCHEMA_PREFIX):
            return _schema_link(ref[len(SCHEMA_PREFIX) :])
        return ref
    if "const" in schema:
        return f"`{schema['const']!r}`" if not isinstance(schema["const"], str) else f'`"{schema["const"]}"`'
    if "enum" in schema:
        return " | ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(type_of(s) for s in schema[key])
    if "allOf" in schema and "type" not in schema and "properties" not in schema:
        return " & ".join(type_of(s) for s in schema["allOf"])
    t = schema.get("type")
    types = t if isinstance(t, list) else ([t] if t else [])
    out = []
    for one in types:
        if one == "array":
            out.append(f"{type_of(schema.get('items', {})) or 'any'}[]")
        elif (
            one == "object"
            and isinstance(schema.get("additionalProperties"), dict)
            and not schema.get("properties")
        ):
            out.append(f"map of {type_of(schema['additionalProperties']) or 'any'}")
        else:
            out.append(str(one))
    return " | ".join(out) or "any"


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("pattern", "pattern"),
    ):
        if key in schema:
            value = f"`{schema[key]}`" if key == "pattern" else schema[key]
            parts.append(f"{label} {value}")
    if "default" in schema:
        parts.append(f"default `{json.dumps(schema['default'])}`")
    return ", ".join(parts)


def error_codes(spec: dict[str, Any], schema: Any) -> list[str]:
    """OpenPAI error codes a response schema allows (the `code` consts of the error schemas)."""
    schema = _resolve(spec, schema)
    if not isinstance(schema, dict):
        return []
    if "oneOf" in schema or "anyOf" in schema:
        codes: list[str] = []
        for sub in schema.get("oneOf", schema.get("anyOf", [])):
            codes.extend(error_codes(spec, sub))
        return codes
    code = schema.get("properties", {}).get("code", {})
    if "const" in code:
        return [code["const"]]
    return []


def _body_description(spec: dict[str, Any], content: dict[str, Any]) -> str:
    parts = []
    for media, media_obj in content.items():
        schema = media_obj.get("schema", {})
        codes = error_codes(spec, schema)
        if codes:
            parts.append(f"`{media}`: " + ", ".join(f"[`{c}`](#{_anchor(c)})" for c in codes))
        else:
            parts.append(f"`{media}`: {type_of(schema)}")
    return "; ".join(parts)


def _operations(spec: dict[str, Any]):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item, item[method]


def _param_rows(spec: dict[str, Any], item: dict[str, Any], op: dict[str, Any]) -> list[dict[str, Any]]:
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for p in item.get("parameters", []) + op.get("parameters", []):
        p = _resolve(spec, p)
        params[(p["in"], p["name"])] = p
    return list(params.values())


def _render_operation(
    spec: dict[str, Any], path: str, method: str, item: dict[str, Any], op: dict[str, Any]
) -> list[str]:
    out = [f"### {method.upper()} `{path}`", ""]
    if op.get("summary"):
        out += [f"**{op['summary']}**" + (f" (`{op['operationId']}`)" if op.get("operationId") else ""), ""]
    if op.get("description"):
        out += [op["description"].strip(), ""]
    params = _param_rows(spec, item, op)
    if params:
        out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            desc = p.get("description", "")
            extra = _constraints(schema)
            if extra:
                desc = f"{desc} ({extra})" if desc else extra
            if "example" in p:
                desc = f"{desc} Example: `{p['example']}`."
            out.append(
                f"| `{p['name']}` | {p['in']} | {_cell(type_of(schema))} | {'yes' if p.get('required') else 'no'} | {_cell(desc)} |"
            )
        out.append("")
    body = op.get("requestBody")
    if body:
        body = _resolve(spec, body)
        required = "required" if body.get("required") else "optional"
        out += [f"Request body ({required}): {_body_description(spec, body.get('content', {}))}", ""]
    out += ["| status | meaning | body |", "|---|---|---|"]
    for status, response in op.get("responses", {}).items():
        response = _resolve(spec, response)
        desc = response.get("description", "")
        headers = response.get("headers", {})
        if headers:
            desc += " Headers: " + ", ".join(f"`{h}`" for h in headers) + "."
        out.append(
            f"| {status} | {_cell(desc)} | {_cell(_body_description(spec, response.get('content', {})))} |"
        )
    out.append("")
    return out


def _render_schema(spec: dict[str, Any], name: str, schema: dict[str, Any]) -> list[str]:
    out = [f'<a id="{_anchor(name)}"></a>', "", f"#### {name}", ""]
    if schema.get("description"):
        out += [schema["description"].strip(), ""]
    props: dict[str, Any] = {}
    required: set[str] = set(schema.get("required", []))
    for sub in schema.get("allOf", []):
        sub = _resolve(spec, sub)
        props.update(sub.get("properties", {}))
        required |= set(sub.get("required", []))
    props.update(schema.get("properties", {}))
    if props:
        out += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, fschema in props.items():
            desc = fschema.get("description", "") if isinstance(fschema, dict) else ""
            extra = _constraints(fschema) if isinstance(fschema, dict) else ""
            if extra:
                desc = f"{desc} ({extra})" if desc else extra
            out.append(
                f"| `{field}` | {_cell(type_of(fschema))} | {'yes' if field in required else 'no'} | {_cell(desc)} |"
            )
        out.append("")
    else:
        out += [f"Type: {type_of(schema)}", ""]
    return out


def render(spec: dict[str, Any]) -> str:
    info = spec["info"]
    out = [
        f"# {info['title']}",
        "",
        "<!-- Generated by docs/gen_api.py from openxpu_server/api/openapi.yaml; do not edit by hand. -->",
        "",
        f"Version {info['version']} (OpenAPI {spec['openapi']}). {info.get('summary', '')}".rstrip(),
        "",
        info.get("description", "").strip(),
        "",
        "## Authentication",
        "",
    ]
    for name, scheme in spec.get("components", {}).get("securitySchemes", {}).items():
        out.append(
            f"- `{name}` ({scheme['type']}, {scheme.get('in', '')} `{scheme.get('name', '')}`): {scheme.get('description', '')}"
        )
    out += ["", "## Routes", "", "| method | path | summary |", "|---|---|---|"]
    for path, method, _item, op in _operations(spec):
        anchor = re.sub(r"[^a-z0-9]+", "-", f"{method} {path}".lower()).strip("-")
        out.append(f"| {method.upper()} | [`{path}`](#{anchor}) | {_cell(op.get('summary', ''))} |")
    out += ["", "## Operations", ""]
    for path, method, item, op in _operations(spec):
        anchor = re.sub(r"[^a-z0-9]+", "-", f"{method} {path}".lower()).strip("-")
        out += [f'<a id="{anchor}"></a>', ""]
        out += _render_operation(spec, path, method, item, op)
    out += ["## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        out += _render_schema(spec, name, schema)
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/api.md is out of date")
    parser.add_argument("--spec", type=Path, default=SPEC_PATH)
    parser.add_argument("--out", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render(load_spec(args.spec))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
