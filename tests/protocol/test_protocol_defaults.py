"""Defaults of openpai.md §1.3/§8, applied both to the JobSpec and to `JobSpec.protocol`."""

from __future__ import annotations

import copy

from protocol_jobs import new_job

from openxpu_server.protocol import parse_job


def test_role_defaults() -> None:
    spec = parse_job(new_job())
    role = spec.task_roles["worker"]
    assert role.instances == 1
    assert role.min_failed_instances == 1
    assert role.min_succeeded_instances == 1
    assert role.task_retry_count == 0
    assert role.shm_mb == 512
    assert role.ports == {"ssh": 1, "http": 1}
    assert role.docker_image == "alpine"
    assert (role.cpu, role.memory_mb, role.gpu) == (1, 128, 0)
    assert role.commands == ["echo hi"]
    assert role.prerequisites == []
    assert role.hived == {}


def test_job_defaults() -> None:
    spec = parse_job(new_job())
    assert spec.name == "job"
    assert spec.virtual_cluster == "default"
    assert spec.priority_class == "test"
    assert spec.priority == 10
    assert spec.job_retry_count == 0
    assert spec.gang_allocation is True
    assert spec.parameters == {} and spec.secrets == {} and spec.extras == {}
    assert spec.docker_images == {"worker": "alpine"}
    assert spec.total_tasks == 1 and spec.total_gpus == 0


def test_defaults_are_written_into_the_protocol() -> None:
    protocol = parse_job(new_job()).protocol
    role = protocol["taskRoles"]["worker"]
    assert role["instances"] == 1
    assert role["completion"] == {"minFailedInstances": 1, "minSucceededInstances": 1}
    assert role["taskRetryCount"] == 0
    assert role["extraContainerOptions"] == {"shmMB": 512}
    assert role["resourcePerInstance"]["ports"] == {"ssh": 1, "http": 1}
    assert protocol["defaults"] == {"virtualCluster": "default"}
    assert protocol["jobRetryCount"] == 0
    # The author's key order comes first; defaults are appended.
    assert list(protocol)[:5] == ["protocolVersion", "name", "type", "prerequisites", "taskRoles"]


def test_completion_null_and_zero_take_defaults_minus_one_is_kept() -> None:
    job = new_job()
    worker = job["taskRoles"]["worker"]
    worker["instances"] = 4
    worker["completion"] = {"minFailedInstances": 0, "minSucceededInstances": None}
    job["taskRoles"]["ps"] = {
        **copy.deepcopy(worker),
        "completion": {"minFailedInstances": -1, "minSucceededInstances": -1},
    }
    job["taskRoles"]["chief"] = {**copy.deepcopy(worker), "instances": 3, "completion": None}
    spec = parse_job(job)
    assert (
        spec.task_roles["worker"].min_failed_instances,
        spec.task_roles["worker"].min_succeeded_instances,
    ) == (1, 4)
    assert (spec.task_roles["ps"].min_failed_instances, spec.task_roles["ps"].min_succeeded_instances) == (
        -1,
        -1,
    )
    assert (
        spec.task_roles["chief"].min_failed_instances,
        spec.task_roles["chief"].min_succeeded_instances,
    ) == (1, 3)
    assert spec.total_tasks == 11


def test_declared_ports_are_kept_and_completed() -> None:
    job = new_job()
    job["taskRoles"]["worker"]["resourcePerInstance"]["ports"] = {"ssh": 3, "tb": 2}
    assert parse_job(job).task_roles["worker"].ports == {"ssh": 3, "tb": 2, "http": 1}


def test_explicit_values_win() -> None:
    job = new_job(
        jobRetryCount=2,
        defaults={"virtualCluster": "vc1"},
        extras={
            "gangAllocation": False,
            "hivedScheduler": {
                "jobPriorityClass": "prod",
                "taskRoles": {"worker": {"skuType": "DT", "skuNum": 2}},
            },
        },
    )
    worker = job["taskRoles"]["worker"]
    worker.update(instances=2, taskRetryCount=5, extraContainerOptions={"shmMB": 64, "infiniband": True})
    worker["resourcePerInstance"]["gpu"] = 4
    spec = parse_job(job)
    assert spec.job_retry_count == 2
    assert spec.virtual_cluster == "vc1"
    assert spec.gang_allocation is False
    assert spec.priority_class == "prod" and spec.priority == 100
    role = spec.task_roles["worker"]
    assert (role.instances, role.task_retry_count, role.shm_mb) == (2, 5, 64)
    assert role.hived == {"skuType": "DT", "skuNum": 2}
    assert spec.total_gpus == 8


def test_job_retry_minus_two_disables_fancy_retry() -> None:
    assert parse_job(new_job(jobRetryCount=-2)).job_retry_count == -2


def test_string_protocol_version_and_integral_floats() -> None:
    job = new_job(protocolVersion="2")
    job["taskRoles"]["worker"]["resourcePerInstance"] = {"cpu": 2.0, "memoryMB": 512.0, "gpu": 1.0}
    role = parse_job(job).task_roles["worker"]
    assert (role.cpu, role.memory_mb, role.gpu) == (2, 512, 1)
    assert all(type(v) is int for v in (role.cpu, role.memory_mb, role.gpu))


def test_crit_priority() -> None:
    spec = parse_job(new_job(extras={"hivedScheduler": {"jobPriorityClass": "crit"}}))
    assert spec.priority == 120


def test_input_mapping_is_not_mutated() -> None:
    job = new_job(parameters={"x": 1}, secrets={"s": "v"})
    before = copy.deepcopy(job)
    spec = parse_job(job)
    assert job == before
    spec.protocol["taskRoles"]["worker"]["commands"].append("mutated")
    assert job == before


def test_parsing_the_effective_protocol_again_is_stable() -> None:
    job = new_job(
        parameters={"n": 3},
        deployments=[
            {"name": "d", "taskRoles": {"worker": {"preCommands": ["echo pre <% $parameters.n %>"]}}}
        ],
        defaults={"deployment": "d"},
    )
    first = parse_job(job)
    second = parse_job(first.protocol)
    assert second.task_roles == first.task_roles
    assert second.protocol == first.protocol
    assert first.task_roles["worker"].commands == ["echo pre 3", "echo hi"]
