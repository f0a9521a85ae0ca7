"""`<% $... %>` rendering: known references replaced, everything else left exactly as written."""

from __future__ import annotations

from typing import Any

import pytest
from protocol_jobs import new_job

from openxpu_server.protocol import parse_job, render

CONTEXT: dict[str, Any] = {
    "$parameters": {
        "lr": 0.1,
        "epochs": 10,
        "one": 1.0,
        "flag": True,
        "nested": {"a": {"b": "deep"}},
        "items": ["x", "y"],
        "conf": {"k": [1, 2]},
        "none": None,
        "dash-key": "dashed",
    },
    "$data": {"name": "ds", "uri": ["/a", "/b"]},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("--lr <% $parameters.lr %>", "--lr 0.1"),
        ("<%$parameters.epochs%>", "10"),
        ("<%   $parameters.epochs\t%>", "10"),
        ("<% $parameters.one %>", "1"),
        ("<% $parameters.flag %>", "true"),
        ("<% $parameters.nested.a.b %>", "deep"),
        ("<% $parameters.items[1] %>", "y"),
        ("<% $parameters.items.0 %>", "x"),
        ("<% $parameters.conf %>", '{"k": [1, 2]}'),
        ("<% $parameters.items %>", '["x", "y"]'),
        ("<% $parameters.dash-key %>", "dashed"),
        ("<% $data.uri[0] %>:<% $data.uri[1] %>", "/a:/b"),
        ("a <% $parameters.lr %> b <% $parameters.epochs %> c", "a 0.1 b 10 c"),
        ("no templates here", "no templates here"),
    ],
)
def test_render_known_references(template: str, expected: str) -> None:
    assert render(template, CONTEXT) == expected


@pytest.mark.parametrize(
    "template",
    [
        "<% $parameters.missing %>",
        "<% $parameters.items[5] %>",
        "<% $parameters.nested.a.b.c %>",
        "<% $parameters.none %>",
        "<% $foo.bar %>",
        "<% $secrets.token %>",
        "<% $script.uri %>",
        "<% parameters.lr %>",
        "<% $parameters.lr extra %>",
        "<%# section %>",
        "<% $parameters.lr",
        "$parameters.lr %>",
    ],
)
def test_unknown_references_stay_verbatim(template: str) -> None:
    assert render(template, CONTEXT) == template


def test_commands_render_role_scoped_prerequisites() -> None:
    job = new_job(
        parameters={"model": "resnet", "sizes": [8, 16]},
        secrets={"token": "s3cr3t"},
        prerequisites=[
            {"type": "dockerimage", "name": "img", "uri": "alpine"},
            {"type": "script", "name": "code_a", "uri": "https://a", "version": "v1"},
            {"type": "script", "name": "code_b", "uri": "https://b"},
            {"type": "data", "name": "d", "uri": ["/d0", "/d1"]},
            {"type": "output", "name": "o", "uri": "/out"},
        ],
    )
    base = job["taskRoles"]["worker"]
    job["taskRoles"] = {
        "a": {
            **base,
            "script": "code_a",
            "data": "d",
            "output": "o",
            "commands": [
                "git clone <% $script.uri %>@<% $script.version %>",
                "  train --data <% $data.uri[1] %> --out <% $output.uri %> --name <% $output.name %>  ",
                "echo <% $parameters.model %> <% $parameters.sizes[0] %> <% $secrets.token %>",
            ],
        },
        "b": {
            **base,
            "script": "code_b",
            "commands": ["git clone <% $script.uri %> <% $data.uri[0] %> <% $script.version %>"],
        },
    }
    spec = parse_job(job)
    assert spec.task_roles["a"].commands == [
        "git clone https://a@v1",
        "train --data /d1 --out /out --name o",
        "echo resnet 8 <% $secrets.token %>",
    ]
    # Role b has no data prerequisite and its script has no version: both stay verbatim.
    assert spec.task_roles["b"].commands == ["git clone https://b <% $data.uri[0] %> <% $script.version %>"]
    assert spec.protocol["taskRoles"]["a"]["commands"] == spec.task_roles["a"].commands


def test_secrets_are_rendered_in_docker_auth_only() -> None:
    job = new_job(
        secrets={"user": "bot", "pw": "hunter2"},
        prerequisites=[
            {
                "type": "dockerimage",
                "name": "img",
                "uri": "reg.example.com/a",
                "auth": {
                    "username": "<% $secrets.user %>",
                    "password": "<% $secrets.pw %>",
                    "registryuri": "<% $secrets.missing %>",
                },
            }
        ],
    )
    job["taskRoles"]["worker"]["commands"] = ["login <% $secrets.pw %>"]
    spec = parse_job(job)
    assert spec.protocol["prerequisites"][0]["auth"] == {
        "username": "bot",
        "password": "hunter2",
        "registryuri": "<% $secrets.missing %>",
    }
    assert spec.task_roles["worker"].commands == ["login <% $secrets.pw %>"]
    assert spec.secrets == {"user": "bot", "pw": "hunter2"}


def test_parameters_are_not_rendered_in_auth() -> None:
    job = new_job(
        parameters={"u": "x"},
        prerequisites=[
            {"type": "dockerimage", "name": "img", "uri": "a", "auth": {"username": "<% $parameters.u %>"}}
        ],
    )
    assert parse_job(job).protocol["prerequisites"][0]["auth"]["username"] == "<% $parameters.u %>"
