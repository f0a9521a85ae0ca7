"""Random mutations of valid jobs: parse_job either accepts or raises InvalidProtocolError, nothing else.

Deterministic seeds, so a failure is reproducible from the test id.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from openxpu_server.errors import InvalidProtocolError
from openxpu_server.protocol import JobSpec, load_text, masked_config_text, parse_job

SEEDS = [
    load_text(p.read_text(encoding="utf-8"))
    for p in sorted((Path(__file__).parent / "corpus" / "valid").glob("*.yaml"))
]

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    -2,
    1,
    2,
    10**30,
    -(10**30),
    1.5,
    2.0,
    float("nan"),
    float("inf"),
    "",
    " ",
    "x" * 300,
    "1",
    "-1",
    "2",
    "job",
    "img",
    "worker",
    "<% $parameters.x %>",
    "<% $secrets.s %>",
    "<% $data.uri[99] %>",
    "bad-name!",
    [],
    {},
    [None],
    [1, "a"],
    {"a": None},
    {"worker": {}},
    {"ssh": 1},
    {"": 1},
    ["echo hi"],
    {"type": "dockerimage"},
]
ODD_KEYS = ["", "gpus", "bad-key", "1", "worker", "ssh", "type", "name", "$secrets", "__proto__", "x" * 100]


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every dict/list in the document (the places a mutation can happen)."""
    found = []
    if isinstance(node, dict):
        found.append(path)
        for key, value in node.items():
            found.extend(_containers(value, (*path, key)))
    elif isinstance(node, list):
        found.append(path)
        for index, value in enumerate(node):
            found.extend(_containers(value, (*path, index)))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    container = _get(doc, rng.choice(_containers(doc)))
    if isinstance(container, dict):
        keys = list(container)
        op = rng.randrange(5) if keys else 1
        if op == 0:
            container[rng.choice(keys)] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif op == 1:
            container[rng.choice(ODD_KEYS)] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif op == 2:
            del container[rng.choice(keys)]
        elif op == 3:
            key = rng.choice(keys)
            container[rng.choice(ODD_KEYS)] = container.pop(key)
        else:
            key = rng.choice(keys)
            container[key] = [container[key]] if rng.random() < 0.5 else {"wrapped": container[key]}
    elif container:
        op = rng.randrange(4)
        index = rng.randrange(len(container))
        if op == 0:
            container[index] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif op == 1:
            container.append(copy.deepcopy(container[index]))
        elif op == 2:
            del container[index]
        else:
            container.insert(index, copy.deepcopy(rng.choice(ODD_VALUES)))
    else:
        container.append(copy.deepcopy(rng.choice(ODD_VALUES)))
    return doc


def _check(source: Any) -> None:
    try:
        spec = parse_job(source)
    except InvalidProtocolError as error:
        assert isinstance(error.field, str) and error.rule
        return
    assert isinstance(spec, JobSpec)
    masked_config_text(spec.protocol)  # whatever parses can also be shown back


@pytest.mark.parametrize("seed", range(400))
def test_structural_mutations_only_raise_protocol_errors(seed: int) -> None:
    rng = random.Random(seed)
    doc = copy.deepcopy(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 4)):
        doc = _mutate(doc, rng)
    _check(doc)


@pytest.mark.parametrize("seed", range(200))
def test_text_mutations_only_raise_protocol_errors(seed: int) -> None:
    rng = random.Random(10_000 + seed)
    text = yaml.safe_dump(rng.choice(SEEDS), sort_keys=False)
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        position = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0:
            del chars[position]
        elif op == 1:
            chars.insert(position, rng.choice(":-[]{}#&*!|>'\"\n\t %<$,?@`0"))
        else:
            chars[position] = rng.choice(":-[]{} \n")
    _check("".join(chars))


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: repr(v)[:24])
def test_odd_value_everywhere(value: Any) -> None:
    """Put one odd value in every container slot of every seed, one slot at a time."""
    for seed in SEEDS[:3]:
        for path in _containers(seed):
            container = _get(seed, path)
            slots = list(container) if isinstance(container, dict) else range(len(container))
            for slot in slots:
                doc = copy.deepcopy(seed)
                _get(doc, path)[slot] = copy.deepcopy(value)
                _check(doc)
