"""Deployments: the one named by defaults.deployment wraps its roles' commands (server side)."""

from __future__ import annotations

from typing import Any

from protocol_jobs import new_job

from openxpu_server.protocol import parse_job


def _job(chosen: str | None) -> dict[str, Any]:
    job = new_job(
        parameters={"p": "P"},
        prerequisites=[
            {"type": "dockerimage", "name": "img", "uri": "alpine"},
            {"type": "data", "name": "d", "uri": ["/data"]},
        ],
        deployments=[
            {"name": "dev", "taskRoles": {"worker": {"preCommands": ["echo dev"]}}},
            {
                "name": "prod",
                "taskRoles": {
                    "worker": {
                        "preCommands": ["  fetch <% $data.uri[0] %>  ", "cd x"],
                        "postCommands": ["upload <% $parameters.p %>"],
                    },
                    "ps": {"postCommands": ["echo ps done"]},
                },
            },
        ],
    )
    job["taskRoles"]["worker"]["data"] = "d"
    job["taskRoles"]["ps"] = {**job["taskRoles"]["worker"], "commands": ["serve"]}
    job["taskRoles"]["solo"] = {**job["taskRoles"]["worker"], "commands": ["alone"]}
    if chosen:
        job["defaults"] = {"deployment": chosen}
    return job


def test_selected_deployment_wraps_commands() -> None:
    spec = parse_job(_job("prod"))
    assert spec.task_roles["worker"].commands == ["fetch /data", "cd x", "echo hi", "upload P"]
    assert spec.task_roles["ps"].commands == ["serve", "echo ps done"]
    assert spec.task_roles["solo"].commands == ["alone"]


def test_other_deployment_is_ignored() -> None:
    spec = parse_job(_job("dev"))
    assert spec.task_roles["worker"].commands == ["echo dev", "echo hi"]
    assert spec.task_roles["ps"].commands == ["serve"]


def test_no_selection_means_no_merge() -> None:
    spec = parse_job(_job(None))
    assert spec.task_roles["worker"].commands == ["echo hi"]


def test_effective_protocol_drops_the_selection_but_keeps_the_vc() -> None:
    job = _job("prod")
    job["defaults"]["virtualCluster"] = "vc2"
    protocol = parse_job(job).protocol
    assert protocol["defaults"] == {"virtualCluster": "vc2"}
    assert [d["name"] for d in protocol["deployments"]] == ["dev", "prod"]
