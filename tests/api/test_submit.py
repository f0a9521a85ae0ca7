"""Server info, job submission (YAML and JSON), protocol rejections, config and secret masking."""

from __future__ import annotations

import json

import pytest
import yaml

import openxpu_server


async def test_info_and_root(api):
    info = await api.json("info")
    assert info == {
        "name": "PAI RESTful API",
        "version": openxpu_server.__version__,
        "launcherType": "openxpu",
        "authnMethod": "jupyter",
        "server": "OpenXPU",
        "user": "alice",
    }
    assert await api.json() == info  # /openxpu/api/v2
    assert await api.json("/") == info  # /openxpu/api/v2/


async def test_submit_yaml_runs_to_success(api, make_job):
    r = await api.request(
        "jobs", method="POST", body=make_job("hello", ["echo hi"]), headers={"Content-Type": "text/yaml"}
    )
    assert r.code == 202, r.body
    body = json.loads(r.body)
    assert body["job"] == "alice~hello"
    assert body["status"] == 202 and "hello" in body["message"]
    detail = await api.wait_state("alice~hello")
    assert detail["name"] == "hello"
    status = detail["jobStatus"]
    assert (status["state"], status["username"], status["appExitCode"]) == ("SUCCEEDED", "alice", 0)
    assert status["appExitSpec"]["phrase"] == "Succeeded"


async def test_submit_json_body(api, make_job):
    job = make_job("from-json", ["echo json"], as_dict=True)
    r = await api.request(
        "jobs", method="POST", body=json.dumps(job), headers={"Content-Type": "application/json"}
    )
    assert r.code == 202, r.body
    assert json.loads(r.body)["job"] == "alice~from-json"
    config = yaml.safe_load((await api.request("jobs", "alice~from-json", "config")).body)
    assert config["name"] == "from-json"
    assert config["taskRoles"]["worker"]["commands"] == ["echo json"]
    assert (await api.wait_state("alice~from-json"))["jobStatus"]["state"] == "SUCCEEDED"


async def test_duplicate_name_conflicts(api, make_job):
    await api.submit(make_job("twice"))
    message = await api.error(
        "jobs", method="POST", body=make_job("twice", ["echo other"]), status=409, code="ConflictJobError"
    )
    assert "twice" in message
    # A JSON submission of the same name conflicts as well; other names are fine.
    await api.error(
        "jobs", method="POST", body=make_job("twice", as_dict=True), status=409, code="ConflictJobError"
    )
    await api.submit(make_job("twice-2"))
    assert await api.names(order="jobName,ASC") == ["twice", "twice-2"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda j: j["taskRoles"]["worker"]["resourcePerInstance"].update(gpu="x"),
            "taskRoles.worker.resourcePerInstance.gpu",
        ),
        (
            lambda j: j["taskRoles"]["worker"]["resourcePerInstance"].update(gpu=-1),
            "taskRoles.worker.resourcePerInstance.gpu",
        ),
        (lambda j: j["taskRoles"]["worker"].update(commands=[]), "taskRoles.worker.commands"),
        (lambda j: j.pop("taskRoles"), "taskRoles"),
        (lambda j: j.update(name="bad name!"), "name"),
        (lambda j: j.update(protocolVersion=3), "protocolVersion"),
        (lambda j: j.update(surprise=1), "surprise"),
        (lambda j: j["taskRoles"]["worker"].update(dockerImage="missing"), "taskRoles.worker.dockerImage"),
    ],
    ids=[
        "gpu-string",
        "gpu-negative",
        "no-commands",
        "no-task-roles",
        "bad-name",
        "version",
        "unknown-key",
        "bad-image-ref",
    ],
)
async def test_invalid_protocol_names_the_field(api, make_job, mutate, field):
    job = make_job("invalid", as_dict=True)
    mutate(job)
    for body, ctype in ((yaml.safe_dump(job), "text/yaml"), (json.dumps(job), "application/json")):
        message = await api.error(
            "jobs",
            method="POST",
            body=body,
            headers={"Content-Type": ctype},
            status=400,
            code="InvalidProtocolError",
        )
        assert field in message, message
    assert await api.list() == []


async def test_invalid_yaml_and_empty_bodies_are_400(api):
    bodies = [
        "name: [unclosed",
        "protocolVersion: 2\n\tname: tabbed",
        '{"protocolVersion": 2, "name": ',
        b"\xff\xfe\x00garbage",
        "",
        "   \n",
        "- a list\n- not a job",
        "just a string",
        "null",
    ]
    for body in bodies:
        r = await api.request("jobs", method="POST", body=body, headers={"Content-Type": "text/yaml"})
        assert r.code == 400, (body, r.code, r.body)
        assert json.loads(r.body)["code"] == "InvalidProtocolError", (body, r.body)
    assert await api.list() == []


async def test_more_gpus_than_declared_is_400(api, make_job):
    # The server declares 2 GPUs: a task asking for 3 can never run.
    message = await api.error(
        "jobs", method="POST", body=make_job("greedy", gpu=3), status=400, code="InvalidProtocolError"
    )
    assert "gpu" in message and "taskRoles.worker" in message, message
    # Two GPUs fit, and the task gets both.
    key = await api.submit(make_job("fits", gpu=2))
    detail = await api.wait_state(key)
    assert detail["jobStatus"]["state"] == "SUCCEEDED"
    assert detail["taskRoles"]["worker"]["taskStatuses"][0]["containerGpus"] == "0,1"
    assert (await api.list(withTotalCount="true"))["totalCount"] == 1


async def test_gang_needing_more_gpus_than_declared_is_400(api, make_job):
    # Each task fits, but a gang of three 2-GPU tasks never fits the VC's 4 GPUs at once.
    message = await api.error(
        "jobs",
        method="POST",
        body=make_job("gang3", instances=3, gpu=2),
        status=400,
        code="InvalidProtocolError",
    )
    assert message.startswith("taskRoles") and "gpu" in message.lower(), message
    # The cell scheduler places a job's tasks together even without gang allocation (a documented
    # limitation), so such a job could never start either: it is refused the same way, not left waiting.
    job = make_job("no-gang3", instances=3, gpu=2, as_dict=True)
    job["extras"] = {"gangAllocation": False}
    await api.error("jobs", method="POST", body=json.dumps(job), status=400, code="InvalidProtocolError")


async def test_unknown_job_is_404(api):
    for parts in (
        ("jobs", "alice~nope"),
        ("jobs", "alice~nope", "config"),
        ("jobs", "alice~nope", "events"),
        ("jobs", "alice~nope", "attempts", "0"),
        ("jobs", "bob~nope"),
    ):
        assert "nope" in await api.error(*parts, status=404, code="NoJobError")
    await api.error(
        "jobs",
        "alice~nope",
        "executionType",
        method="PUT",
        body={"value": "STOP"},
        status=404,
        code="NoJobError",
    )
    await api.error(
        "jobs", "alice~nope", "tag", method="PUT", body={"value": "t"}, status=404, code="NoJobError"
    )
    # A segment without "~" is not a job id at all.
    await api.error("jobs", "nope", status=404, code="NoApiError")


async def test_config_is_yaml_with_secrets_masked_everywhere(api, make_job):
    job = make_job(
        "secretive", ["echo using a secret"], secrets={"pw": "hunter2", "token": "s3cr3t-t0ken"}, as_dict=True
    )
    job["prerequisites"][0]["auth"] = {
        "username": "bot",
        "password": "<% $secrets.pw %>",
        "registryuri": "example.com",
    }
    key = await api.submit(yaml.safe_dump(job))
    await api.wait_state(key)

    r = await api.request("jobs", key, "config")
    assert r.code == 200
    assert r.headers["Content-Type"].startswith("text/yaml"), r.headers["Content-Type"]
    config = yaml.safe_load(r.body)
    assert config["secrets"] == {"pw": "******", "token": "******"}
    assert config["name"] == "secretive"
    assert config["prerequisites"][0]["auth"]["password"] == "<% $secrets.pw %>"

    responses = [
        r,
        await api.request("jobs", key),
        await api.request("jobs", key, "attempts", "0"),
        await api.request("jobs"),
        await api.request("jobs", params={"withTotalCount": "true", "keyword": "secret"}),
        await api.request("jobs", key, "events"),
        await api.request(*api.task_parts(key)),
    ]
    for response in responses:
        assert response.code == 200, response.body
        assert b"hunter2" not in response.body and b"s3cr3t-t0ken" not in response.body, response.request.url


async def test_config_of_json_submission_is_yaml(api, make_job):
    job = make_job("json-secret", secrets={"pw": "hunter2"}, as_dict=True)
    key = await api.submit(job)
    r = await api.request("jobs", key, "config")
    assert r.headers["Content-Type"].startswith("text/yaml")
    assert b"hunter2" not in r.body
    assert yaml.safe_load(r.body)["secrets"] == {"pw": "******"}


CORPUS = __import__("pathlib").Path(__file__).resolve().parents[1] / "protocol" / "corpus"


async def test_every_invalid_corpus_file_is_a_400_naming_its_rule(api):
    """The protocol corpus over HTTP: each invalid file is a 400 InvalidProtocolError, never a 500."""
    files = sorted((CORPUS / "invalid").glob("*.yaml"))
    assert len(files) >= 30
    for f in files:
        text = f.read_text()
        expect = text.splitlines()[0].removeprefix("# expect:").strip()
        body = "\n".join(text.splitlines()[1:])  # as the protocol corpus test: without the expect line
        message = await api.error(
            "jobs", method="POST", body=body, headers={"Content-Type": "text/yaml"}, status=400,
            code="InvalidProtocolError",
        )
        assert expect in message, (f.name, message)
