"""What the notebook tests share besides fixtures (a module of its own: `from conftest import` is
ambiguous when pytest collects several test folders at once)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).with_name("data")


def stream_text(outputs: list[dict]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["type"] == "stream")


def result_text(outputs: list[dict]) -> str:
    return "".join(o["data"].get("text/plain", "") for o in outputs if o["type"] == "execute_result")
