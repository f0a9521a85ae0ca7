"""Every file in corpus/valid parses; every file in corpus/invalid fails with its `# expect:` text."""

from __future__ import annotations

from pathlib import Path

import pytest

from openxpu_server.errors import InvalidProtocolError
from openxpu_server.protocol import JobSpec, parse_job

CORPUS = Path(__file__).parent / "corpus"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
EXPECT = "# expect:"


def _split_expectation(path: Path) -> tuple[str, str]:
    """(expected substring, document without the expectation line)."""
    first, _, rest = path.read_text(encoding="utf-8").partition("\n")
    assert first.startswith(EXPECT), f"{path.name} must start with '{EXPECT} <substring>'"
    return first[len(EXPECT) :].strip(), rest


def test_corpus_is_big_enough() -> None:
    assert len(VALID) >= 12
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_corpus_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spec = parse_job(text)
    assert isinstance(spec, JobSpec)
    assert spec.task_roles
    for role in spec.task_roles.values():
        assert role.commands and all(c == c.strip() for c in role.commands)
        assert {"ssh", "http"} <= set(role.ports)
    # Bytes are accepted as well, with the same result.
    assert parse_job(text.encode()).protocol == spec.protocol


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_corpus_is_rejected(path: Path) -> None:
    expected, text = _split_expectation(path)
    with pytest.raises(InvalidProtocolError) as info:
        parse_job(text)
    assert expected in str(info.value)
    assert info.value.status == 400
    assert info.value.to_dict()["code"] == "InvalidProtocolError"


def test_invalid_corpus_covers_distinct_rules() -> None:
    expectations = [_split_expectation(path)[0] for path in INVALID]
    assert len(set(expectations)) == len(expectations)
