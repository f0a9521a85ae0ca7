"""OpenPAI's exit-code table (k8s-job-exit-spec) as data, and the questions asked of it.

The table lives in `exit_spec.yaml` next to this module and is loaded (and validated) once.
`lookup(code)` always answers: codes missing from the table fall back to the spec of 256
(unknown positive code) or -8000 (unknown negative code), with `code` replaced by the real one,
exactly like OpenPAI's rest-server does for `appExitSpec`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import yaml

# Fallback codes (reference openpai.md §3.2).
UNKNOWN_POSITIVE_CODE = 256
UNKNOWN_NEGATIVE_CODE = -8000
# What the runtime reports for a non-zero user exit it cannot attribute (§3.3).
RUNTIME_UNKNOWN_FAILURE_CODE = 255
SUCCEEDED_CODE = 0

_REQUIRED_TEXT = ("phrase", "issuer", "causer", "type", "stage", "behavior", "reaction", "reason")
_ENUM_FIELDS = ("issuer", "causer", "type", "stage", "behavior", "reaction")


@dataclass(frozen=True)
class RuntimePattern:
    """One runtime log-analysis pattern; every field that is not None must match."""

    exit_code: int | None = None
    user_log_regex: str | None = None
    platform_log_regex: str | None = None
    gpu_info: tuple[tuple[str, str], ...] | None = None  # sorted (key, value) pairs

    @property
    def exit_code_only(self) -> bool:
        return (
            self.exit_code is not None
            and self.user_log_regex is None
            and self.platform_log_regex is None
            and self.gpu_info is None
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.user_log_regex is not None:
            out["userLogRegex"] = self.user_log_regex
        if self.platform_log_regex is not None:
            out["platformLogRegex"] = self.platform_log_regex
        if self.gpu_info is not None:
            out["gpuInfo"] = dict(self.gpu_info)
        return out


@dataclass(frozen=True)
class ExitSpec:
    code: int
    phrase: str
    issuer: str
    causer: str
    type: str
    stage: str
    behavior: str
    reaction: str
    reason: str
    repro: tuple[str, ...]
    solution: tuple[str, ...]
    patterns: tuple[RuntimePattern, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """OpenPAI's `appExitSpec` / `containerExitSpec` object."""
        return {
            "code": self.code,
            "phrase": self.phrase,
            "issuer": self.issuer,
            "causer": self.causer,
            "type": self.type,
            "stage": self.stage,
            "behavior": self.behavior,
            "reaction": self.reaction,
            "reason": self.reason,
            "repro": list(self.repro),
            "solution": list(self.solution),
        }

    @property
    def is_transient(self) -> bool:
        return self.behavior in ("TRANSIENT", "TRANSIENT_CONFLICT") and self.reaction in (
            "ALWAYS_RETRY",
            "ALWAYS_BACKOFF_RETRY",
        )

    @property
    def is_permanent(self) -> bool:
        if self.code == SUCCEEDED_CODE:
            return False
        return self.behavior == "PERMANENT" or self.reaction == "NEVER_RETRY"


@dataclass(frozen=True)
class _Table:
    enums: dict[str, tuple[str, ...]]
    specs: tuple[ExitSpec, ...]  # file order, which is the pattern-matching order
    by_code: dict[int, ExitSpec]


def _parse_pattern(raw: Any, where: str) -> RuntimePattern:
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{where}: a pattern must be a non-empty mapping")
    unknown = set(raw) - {"exitCode", "userLogRegex", "platformLogRegex", "gpuInfo"}
    if unknown:
        raise ValueError(f"{where}: unknown pattern fields {sorted(unknown)}")
    exit_code = raw.get("exitCode")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        raise ValueError(f"{where}: exitCode must be an int")
    gpu = raw.get("gpuInfo")
    gpu_info = None
    if gpu is not None:
        if not isinstance(gpu, dict) or not gpu:
            raise ValueError(f"{where}: gpuInfo must be a non-empty mapping")
        gpu_info = tuple(sorted((str(k), str(v)) for k, v in gpu.items()))
    return RuntimePattern(
        exit_code=exit_code,
        user_log_regex=raw.get("userLogRegex"),
        platform_log_regex=raw.get("platformLogRegex"),
        gpu_info=gpu_info,
    )


def parse_table(text: str) -> _Table:
    """Parse and validate the YAML table (exposed for tests and admin-supplied tables)."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or "spec" not in doc or "enums" not in doc:
        raise ValueError("exit spec: top level must have `enums` and `spec`")
    enums = {k: tuple(v) for k, v in doc["enums"].items()}
    for name in _ENUM_FIELDS:
        if name not in enums:
            raise ValueError(f"exit spec: enum {name!r} missing")
    specs: list[ExitSpec] = []
    by_code: dict[int, ExitSpec] = {}
    phrases: set[str] = set()
    for raw in doc["spec"]:
        code = raw.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise ValueError(f"exit spec: bad code {code!r}")
        where = f"exit spec code {code}"
        for name in _REQUIRED_TEXT:
            if not isinstance(raw.get(name), str) or not raw[name].strip():
                raise ValueError(f"{where}: {name} is required")
        for name in _ENUM_FIELDS:
            if raw[name] not in enums[name]:
                raise ValueError(f"{where}: {name}={raw[name]!r} is not one of {enums[name]}")
        for name in ("repro", "solution"):
            items = raw.get(name)
            if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
                raise ValueError(f"{where}: {name} must be a non-empty list of strings")
        patterns = tuple(
            _parse_pattern(p, f"{where} pattern {i}") for i, p in enumerate(raw.get("patterns") or [])
        )
        for p in patterns:
            for rx in (p.user_log_regex, p.platform_log_regex):
                if rx is not None:
                    try:
                        re.compile(rx, re.MULTILINE)
                    except re.error as e:
                        raise ValueError(f"{where}: invalid regex {rx!r}: {e}") from e
        if code in by_code:
            raise ValueError(f"{where}: duplicated code")
        if raw["phrase"] in phrases:
            raise ValueError(f"{where}: duplicated phrase {raw['phrase']!r}")
        spec = ExitSpec(
            code=code,
            phrase=raw["phrase"],
            issuer=raw["issuer"],
            causer=raw["causer"],
            type=raw["type"],
            stage=raw["stage"],
            behavior=raw["behavior"],
            reaction=raw["reaction"],
            reason=raw["reason"].strip(),
            repro=tuple(raw["repro"]),
            solution=tuple(raw["solution"]),
            patterns=patterns,
        )
        specs.append(spec)
        by_code[code] = spec
        phrases.add(spec.phrase)
    for fallback in (
        UNKNOWN_POSITIVE_CODE,
        UNKNOWN_NEGATIVE_CODE,
        RUNTIME_UNKNOWN_FAILURE_CODE,
        SUCCEEDED_CODE,
    ):
        if fallback not in by_code:
            raise ValueError(f"exit spec: code {fallback} is required")
    return _Table(enums=enums, specs=tuple(specs), by_code=by_code)


@functools.lru_cache(maxsize=1)
def _table() -> _Table:
    text = resources.files(__package__).joinpath("exit_spec.yaml").read_text(encoding="utf-8")
    return parse_table(text)


def all_specs() -> tuple[ExitSpec, ...]:
    """Every entry of the table, in table (= pattern-matching) order."""
    return _table().specs


def enums() -> dict[str, tuple[str, ...]]:
    """The allowed values of issuer, causer, type, stage, behavior and reaction."""
    return dict(_table().enums)


def known(code: int) -> bool:
    """Whether `code` has its own entry (not a fallback)."""
    return code in _table().by_code


def lookup(code: int) -> ExitSpec:
    """The spec of `code`; unknown codes get the 256 / -8000 fallback carrying the real code."""
    table = _table()
    spec = table.by_code.get(code)
    if spec is not None:
        return spec
    fallback = UNKNOWN_NEGATIVE_CODE if code < 0 else UNKNOWN_POSITIVE_CODE
    return replace(table.by_code[fallback], code=code)


def is_transient(code: int) -> bool:
    """Retry without counting it (FC fancy retry: Transient). PLATFORM_FAILURE + ALWAYS_RETRY codes,
    signal kills 130/131/137/143, controller codes -100..-120, the 251 gang timeout (back-off), 200/201."""
    return lookup(code).is_transient


def is_permanent(code: int) -> bool:
    """Never retry (FC fancy retry: Permanent): behavior PERMANENT or reaction NEVER_RETRY.
    Success (0) is not a failure and is not permanent."""
    return lookup(code).is_permanent


def exit_type(code: int) -> str:
    """USER_SUCCESS, USER_STOP, USER_FAILURE, PLATFORM_FAILURE, RESOURCE_ALLOCATION_TIMEOUT or UNKNOWN_FAILURE."""
    return lookup(code).type


def needs_backoff(code: int) -> bool:
    """Transient conflicts (e.g. 251) are retried after a random back-off delay (FC: 60-900 s)."""
    return lookup(code).reaction == "ALWAYS_BACKOFF_RETRY"
