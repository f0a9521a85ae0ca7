"""`<% $root.key[0].sub %>` references, rendered the way the OpenPAI rest-server does.

Upstream feeds the text to mustache with `<% %>` delimiters, rewrites `[n]` to `.n`, and writes back
any reference whose value is missing or null verbatim. We do the same without mustache: a reference
that names an unknown root, a missing key, an out-of-range index or a null value stays in the text
untouched, so the runtime (or the user) can still see and resolve it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# Whitespace-tolerant: `<%$parameters.x%>` and `<%  $parameters.x  %>` are the same reference.
_REFERENCE = re.compile(r"<%\s*(\$[A-Za-z_][A-Za-z0-9_]*(?:\.[^\s.\[\]%]+|\[\d+\])*)\s*%>")
_SEGMENT = re.compile(r"\.([^\s.\[\]%]+)|\[(\d+)\]")
_MISSING = object()


def _lookup(context: Mapping[str, Any], expression: str) -> Any:
    """Resolve `$root.a[0].b` in `context`; `_MISSING` when any step does not exist."""
    root_end = len(expression)
    match = _SEGMENT.search(expression)
    if match:
        root_end = match.start()
    value: Any = context.get(expression[:root_end], _MISSING)
    for key, index in _SEGMENT.findall(expression[root_end:]):
        if value is _MISSING or value is None:
            return _MISSING
        step = key or index
        if isinstance(value, Mapping):
            value = value.get(step, _MISSING)
        elif isinstance(value, list) and step.isdigit():  # `.0` works on lists, as in mustache
            position = int(step)
            value = value[position] if position < len(value) else _MISSING
        else:
            return _MISSING
    return value


def to_text(value: Any) -> str:
    """How a value appears in a command: scalars as JSON/JS print them, containers as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # JavaScript prints 1.0 as "1": keep commands identical to what OpenPAI produced.
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def render(text: str, context: Mapping[str, Any]) -> str:
    """Replace every resolvable `<% $... %>` in `text`; leave the rest exactly as written."""
    if "<%" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        value = _lookup(context, match.group(1))
        if value is _MISSING or value is None:
            return match.group(0)
        try:
            return to_text(value)
        except (TypeError, ValueError, RecursionError):  # unrenderable value: leave the reference
            return match.group(0)

    return _REFERENCE.sub(replace, text)
