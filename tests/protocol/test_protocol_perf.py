"""parse_job sits on the submit path: a typical job must parse in about a millisecond.

The target is < 2 ms (about 0.8 ms for text, 0.5 ms for a mapping on a 2024 laptop); the bound
asserted here is loose so that a slow CI runner does not flake, but it still catches a validator
compiled per call or a quadratic step.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openxpu_server.protocol import load_text, parse_job

EXAMPLE = (Path(__file__).parent / "corpus" / "valid" / "openpai_md_example.yaml").read_text(encoding="utf-8")


def _median_ms(function: Callable[[Any], Any], argument: Any, runs: int = 60) -> float:
    function(argument)  # warm up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function(argument)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def test_parse_job_is_fast() -> None:
    assert _median_ms(parse_job, EXAMPLE) < 10
    assert _median_ms(parse_job, load_text(EXAMPLE)) < 10
