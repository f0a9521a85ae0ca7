"""Helpers for tests that drive an in-process engine (importable from any test directory)."""

from __future__ import annotations

import time

from openxpu_server.engine import Engine
from openxpu_server.scheduler.fit import Node


def make_nodes(cpu: int = 8, memory_mb: int = 16384, gpus: int = 4) -> list[Node]:
    return [Node(name="box", host_ip="127.0.0.1", cpu=cpu, memory_mb=memory_mb, gpus=list(range(gpus)))]


def wait_for(engine: Engine, key: str, states=("SUCCEEDED", "FAILED", "STOPPED"), timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, _, _ = engine.jobs.job_state(key)
        if state in states:
            return state
        engine.wait_for_change(0.2)
    raise AssertionError(f"{key} did not reach {states} in {timeout}s (now {state}): {engine.jobs.events(key)}")
