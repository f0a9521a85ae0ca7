"""Each rejection rule, checked on its `field` and `rule` (the API shows both)."""

from __future__ import annotations

from typing import Any

import pytest
from protocol_jobs import new_job

from openxpu_server.errors import InvalidProtocolError
from openxpu_server.protocol import parse_job

IMG = {"type": "dockerimage", "name": "img", "uri": "alpine"}


def _reject(job: Any) -> InvalidProtocolError:
    with pytest.raises(InvalidProtocolError) as info:
        parse_job(job)
    return info.value


def _role(job: dict[str, Any], **fields: Any) -> dict[str, Any]:
    job["taskRoles"]["worker"].update(fields)
    return job


def test_error_shape() -> None:
    job = new_job()
    job["taskRoles"]["worker"]["resourcePerInstance"]["gpu"] = -1
    error = _reject(job)
    assert error.field == "taskRoles.worker.resourcePerInstance.gpu"
    assert error.rule == "must be an integer >= 0"
    assert str(error) == "taskRoles.worker.resourcePerInstance.gpu: must be an integer >= 0"
    assert error.to_dict() == {"code": "InvalidProtocolError", "message": str(error)}


@pytest.mark.parametrize("value", [True, "1", 1.5, None, [1], {"n": 1}])
def test_non_integers_are_not_counts(value: Any) -> None:
    job = new_job()
    job["taskRoles"]["worker"]["resourcePerInstance"]["cpu"] = value
    assert str(_reject(job)) == "taskRoles.worker.resourcePerInstance.cpu: must be an integer >= 0"


def test_unknown_field_in_role() -> None:
    error = _reject(_role(new_job(), gpus=1))
    assert (error.field, error.rule.split(" (")[0]) == ("taskRoles.worker", "unknown field 'gpus'")


def test_unknown_fields_listed() -> None:
    assert "unknown fields 'a', 'b'" in str(_reject(new_job(a=1, b=2)))


def test_missing_sections() -> None:
    job = new_job()
    del job["taskRoles"]
    assert str(_reject(job)) == "taskRoles: required"
    job = new_job()
    del job["taskRoles"]["worker"]["dockerImage"]
    assert str(_reject(job)) == "taskRoles.worker.dockerImage: required"


def test_name_rules() -> None:
    assert str(_reject(new_job(name="a b"))) == "name: must match ^[a-zA-Z0-9_-]+$ (letters, digits, _ and -)"
    assert str(_reject(new_job(name=""))) == "name: must match ^[a-zA-Z0-9_-]+$ (letters, digits, _ and -)"
    assert str(_reject(new_job(name="n" * 256))) == "name: must be at most 255 characters"
    parse_job(new_job(name="n" * 255))


@pytest.mark.parametrize("role", ["_private", "Worker2", "ps_server", "a"])
def test_valid_role_names(role: str) -> None:
    job = new_job()
    job["taskRoles"] = {role: job["taskRoles"]["worker"]}
    assert list(parse_job(job).task_roles) == [role]


@pytest.mark.parametrize("role", ["my-worker", "2nd", "with space", "dot.ted", ""])
def test_invalid_role_names(role: str) -> None:
    job = new_job()
    job["taskRoles"] = {role: job["taskRoles"]["worker"]}
    error = _reject(job)
    assert error.field == f"taskRoles.{role}"
    assert error.rule.startswith("task role name must match ^[a-zA-Z_][a-zA-Z0-9_]*$")


def test_protocol_version_and_type() -> None:
    for version in (1, "1", 2.5, True, None):
        assert str(_reject(new_job(protocolVersion=version))) == 'protocolVersion: must be 2 or "2"'
    assert str(_reject(new_job(type="service"))) == "type: must be 'job'"


def test_duplicate_prerequisite_names_per_type() -> None:
    job = new_job(prerequisites=[IMG, {**IMG, "uri": "busybox"}])
    assert str(_reject(job)) == "prerequisites[1].name: duplicate dockerimage prerequisite 'img'"
    # The same name under two types is fine.
    parse_job(new_job(prerequisites=[IMG, {"type": "script", "name": "img", "uri": "x"}]))


@pytest.mark.parametrize(
    ("field", "kind", "article"),
    [
        ("dockerImage", "dockerimage", "a"),
        ("script", "script", "a"),
        ("data", "data", "a"),
        ("output", "output", "an"),
    ],
)
def test_role_references_must_exist(field: str, kind: str, article: str) -> None:
    error = _reject(_role(new_job(), **{field: "ghost"}))
    assert error.field == f"taskRoles.worker.{field}"
    known = "img" if kind == "dockerimage" else "none"
    assert error.rule == f"'ghost' is not {article} {kind} prerequisite (known: {known})"


def test_role_reference_must_have_the_right_type() -> None:
    job = new_job(prerequisites=[IMG, {"type": "data", "name": "d", "uri": ["/d"]}])
    assert "'d' is not a script prerequisite (known: none)" in str(_reject(_role(job, script="d")))


def test_role_prerequisites_must_exist() -> None:
    error = _reject(_role(new_job(), prerequisites=["img", "nope"]))
    assert (error.field, error.rule) == (
        "taskRoles.worker.prerequisites[1]",
        "'nope' is not a prerequisite (known: img)",
    )


def test_required_prerequisites_must_exist() -> None:
    job = new_job(
        prerequisites=[IMG, {"type": "script", "name": "s", "plugin": "p", "require": ["img", "x"]}]
    )
    assert str(_reject(job)) == "prerequisites[1].require[1]: 'x' is not a prerequisite (known: img, s)"


def test_default_deployment_must_exist() -> None:
    job = new_job(defaults={"deployment": "prod"})
    assert str(_reject(job)) == "defaults.deployment: 'prod' is not a deployment (known: none)"


def test_deployment_roles_must_exist() -> None:
    job = new_job(deployments=[{"name": "d", "taskRoles": {"ps": {"preCommands": ["x"]}}}])
    assert str(_reject(job)) == "deployments[0].taskRoles.ps: not a task role of this job (known: worker)"


def test_deployment_names_unique() -> None:
    item = {"name": "d", "taskRoles": {"worker": {"preCommands": ["x"]}}}
    assert str(_reject(new_job(deployments=[item, item]))) == "deployments[1].name: duplicate deployment 'd'"


def test_hived_sku_type_and_pinned_cell_are_exclusive() -> None:
    job = new_job(
        extras={"hivedScheduler": {"taskRoles": {"worker": {"skuType": "DT", "pinnedCellId": "c"}}}}
    )
    error = _reject(job)
    assert (error.field, error.rule) == (
        "extras.hivedScheduler.taskRoles.worker",
        "skuType and pinnedCellId are mutually exclusive",
    )
    parse_job(new_job(extras={"hivedScheduler": {"taskRoles": {"worker": {"pinnedCellId": "c"}}}}))


def test_hived_roles_must_exist() -> None:
    job = new_job(extras={"hivedScheduler": {"taskRoles": {"ps": {"skuType": "DT"}}}})
    assert str(_reject(job)).startswith("extras.hivedScheduler.taskRoles.ps: not a task role of this job")


@pytest.mark.parametrize("priority", ["prod", "test", "oppo", "crit"])
def test_priority_classes(priority: str) -> None:
    assert (
        parse_job(new_job(extras={"hivedScheduler": {"jobPriorityClass": priority}})).priority_class
        == priority
    )


def test_unknown_priority_class() -> None:
    error = _reject(new_job(extras={"hivedScheduler": {"jobPriorityClass": "high"}}))
    assert error.field == "extras.hivedScheduler.jobPriorityClass"


@pytest.mark.parametrize("key", ["minFailedInstances", "minSucceededInstances"])
def test_completion_within_instances(key: str) -> None:
    error = _reject(_role(new_job(), instances=2, completion={key: 3}))
    assert error.field == f"taskRoles.worker.completion.{key}"
    assert error.rule == "must be at most instances (2), or -1 to disable (got 3)"
    parse_job(_role(new_job(), instances=3, completion={key: 3}))


def test_completion_below_minus_one() -> None:
    error = _reject(_role(new_job(), completion={"minFailedInstances": -2}))
    assert error.rule == "must be an integer >= -1 or null"


@pytest.mark.parametrize("value", [-1, -3, "1", 1.5])
def test_job_retry_count(value: Any) -> None:
    assert _reject(new_job(jobRetryCount=value)).field == "jobRetryCount"


def test_commands_must_not_be_blank() -> None:
    assert _reject(_role(new_job(), commands=[" ", "\n"])).rule == "must have at least one non-empty command"
    assert _reject(_role(new_job(), commands=[])).rule == "must have at least one command"


def test_runtime_plugin_taskroles_must_exist() -> None:
    job = new_job(
        extras={"com.microsoft.pai.runtimeplugin": [{"plugin": "ssh", "taskroles": ["worker", "x"]}]}
    )
    assert _reject(job).field == "extras.com.microsoft.pai.runtimeplugin[0].taskroles[1]"


def test_list_indices_in_paths() -> None:
    job = new_job(prerequisites=[IMG, {"type": "script", "name": "s", "uri": 5}])
    assert str(_reject(job)) == "prerequisites[1].uri: must be a string"


def test_plugin_prerequisites_keep_extra_keys() -> None:
    item = {
        "type": "script",
        "name": "cb",
        "plugin": "com.microsoft.pai.runtimeplugin.cmd",
        "callbacks": [{"event": "taskStarts", "commands": ["echo"]}],
    }
    spec = parse_job(_role(new_job(prerequisites=[IMG, item]), prerequisites=["cb"]))
    assert spec.task_roles["worker"].prerequisites == ["cb"]
    assert spec.protocol["prerequisites"][1]["callbacks"] == item["callbacks"]


def test_extras_are_free_form() -> None:
    spec = parse_job(new_job(extras={"myTool": {"anything": [1, 2]}, "hivedScheduler": {"custom": 1}}))
    assert spec.extras["myTool"] == {"anything": [1, 2]}


@pytest.mark.parametrize("source", [None, 42, ["a"], object()])
def test_non_documents(source: Any) -> None:
    assert _reject(source).field == ""
