"""The pure protocol layer: OpenPAI job protocol v2 text in, a validated `JobSpec` out (no I/O).

    spec = parse_job(yaml_text)          # or JSON text, bytes, or an already-loaded mapping
    text = masked_config_text(yaml_text)  # what GET .../config returns: secrets as "******"

Every rejection is a single `InvalidProtocolError(field, rule)` naming the dotted path that failed.
"""

from __future__ import annotations

from .parse import MASK, dump_yaml, load_text, mask_secrets, masked_config_text, parse_job
from .render import render
from .schema import PROTOCOL_SCHEMA
from .spec import DEFAULT_PRIORITY_CLASS, PRIORITY_VALUES, JobSpec, TaskRoleSpec

__all__ = [
    "DEFAULT_PRIORITY_CLASS",
    "MASK",
    "PRIORITY_VALUES",
    "PROTOCOL_SCHEMA",
    "JobSpec",
    "TaskRoleSpec",
    "dump_yaml",
    "load_text",
    "mask_secrets",
    "masked_config_text",
    "parse_job",
    "render",
]
