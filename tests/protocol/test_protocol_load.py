"""load_text: YAML or JSON in, a JSON-shaped dict out, syntax errors with a position."""

from __future__ import annotations

import pytest

from openxpu_server.errors import InvalidProtocolError
from openxpu_server.protocol import load_text


def _error(text: str | bytes) -> InvalidProtocolError:
    with pytest.raises(InvalidProtocolError) as info:
        load_text(text)
    return info.value


def test_yaml_and_json() -> None:
    assert load_text("a: 1\nb: [x, y]\n") == {"a": 1, "b": ["x", "y"]}
    assert load_text('{"a": 1, "b": ["x"]}') == {"a": 1, "b": ["x"]}
    assert load_text(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # UTF-8 BOM
    assert load_text("{a: 1}") == {"a": 1}  # YAML flow style starting with a brace


def test_yaml_syntax_error_has_position() -> None:
    error = _error("a: 1\nb: [1, 2\nc: 3\n")
    assert error.field == ""
    assert error.rule.startswith("invalid YAML/JSON: ")
    assert "line 3, column" in error.rule


def test_json_syntax_error_has_position() -> None:
    assert _error('{"a": 1 "b": 2}').rule == "invalid YAML/JSON: Expecting ',' delimiter at line 1, column 9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "must be a mapping at the top level, not a list"),
        ("", "not an empty document"),
        ("just text", "not a string"),
        ("42", "not a int"),
    ],
)
def test_top_level_must_be_a_mapping(text: str, expected: str) -> None:
    assert expected in str(_error(text))


def test_duplicate_keys_are_rejected() -> None:
    assert "found duplicate key 'a' at line 2, column 1" in str(_error("a: 1\na: 2\n"))
    assert "duplicate key 'a'" in str(_error('{"a": 1, "a": 2}'))


def test_merge_keys_may_be_overridden() -> None:
    assert load_text("base: &b {x: 1, y: 2}\nrole:\n  <<: *b\n  x: 3\n")["role"] == {"x": 3, "y": 2}


def test_keys_and_dates_become_strings() -> None:
    assert load_text("1: a\ntrue: b\nday: 2024-01-02\n") == {"1": "a", "true": "b", "day": "2024-01-02"}


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system [echo]",
        "a: !!binary aGVsbG8=",
        "a: !!set {x}",
        "a: &x [*x]",
        "[" * 100_000,
        "a: " + "9" * 5000,
        b"\xff\xfe\x00",
        "? [a, b]\n: 1\n",
        "--- a: 1\n--- b: 2\n",
    ],
)
def test_hostile_text_is_a_protocol_error(text: str | bytes) -> None:
    _error(text)


def test_non_finite_numbers_are_rejected() -> None:
    assert str(_error("parameters: {lr: .nan}")) == "parameters.lr: must be a finite number"
    assert str(_error("a: [1, -.inf]")) == "a[1]: must be a finite number"


def test_alias_bomb_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    assert "too large" in str(_error("\n".join(lines)))
