"""A minimal valid job to mutate, shared by the protocol tests.

A uniquely named module instead of conftest.py: several test folders import `conftest` by name,
and one more module of that name would shadow theirs.
"""

from __future__ import annotations

import copy
from typing import Any

MINIMAL: dict[str, Any] = {
    "protocolVersion": 2,
    "name": "job",
    "type": "job",
    "prerequisites": [{"type": "dockerimage", "name": "img", "uri": "alpine"}],
    "taskRoles": {
        "worker": {
            "dockerImage": "img",
            "resourcePerInstance": {"cpu": 1, "memoryMB": 128, "gpu": 0},
            "commands": ["echo hi"],
        }
    },
}


def new_job(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of MINIMAL, with top-level keys overridden by keyword arguments."""
    job = copy.deepcopy(MINIMAL)
    job.update(copy.deepcopy(overrides))
    return job
