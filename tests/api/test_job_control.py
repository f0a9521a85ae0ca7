"""Job detail and attempts (OpenPAI §2.4), stopping (executionType), tags and events."""

from __future__ import annotations

TASK_FIELDS = {
    "taskIndex", "taskUid", "taskState", "retries", "accountableRetries", "createdTime", "launchedTime",
    "completedTime", "containerId", "containerIp", "containerNodeName", "containerPorts", "containerGpus",
    "containerLog", "containerExitCode", "containerExitSpec", "containerExitDiagnostics", "attemptId",
    "attemptState", "currentAttemptCreatedTime", "currentAttemptLaunchedTime", "currentAttemptCompletedTime",
}  # fmt: skip
JOB_STATUS_FIELDS = {
    "username", "state", "subState", "executionType", "retries", "retryDetails", "retryDelayTime",
    "submissionTime", "createdTime", "launchedTime", "completedTime", "attemptId", "attemptState", "appId",
    "appProgress", "appTrackingUrl", "appCreatedTime", "appLaunchedTime", "appCompletedTime", "appExitCode",
    "appExitSpec", "appExitDiagnostics", "appExitMessages", "appExitTriggerMessage", "appExitTriggerTaskRoleName",
    "appExitTriggerTaskIndex", "appExitType", "virtualCluster",
}  # fmt: skip


async def test_running_job_detail_then_stop(api, make_job):
    key = await api.submit(
        make_job("sleeper", ["echo started", "sleep 60"], instances=2, ports={"syncport": 2})
    )
    detail = await api.wait_tasks_running(key, count=2)

    assert {"debugId", "name", "tags", "jobPriority", "jobStatus", "taskRoles"} <= set(detail)
    assert detail["name"] == "sleeper" and detail["tags"] == [] and detail["jobPriority"] == "test"
    status = detail["jobStatus"]
    assert set(status) >= JOB_STATUS_FIELDS
    assert (status["state"], status["subState"], status["attemptState"]) == (
        "RUNNING",
        "AttemptRunning",
        "RUNNING",
    )
    assert (status["attemptId"], status["retries"], status["executionType"]) == (0, 0, "START")
    assert status["retryDetails"] == {"user": 0, "platform": 0, "resource": 0}
    assert status["appExitCode"] is None and status["appExitSpec"] is None and status["completedTime"] is None
    assert status["username"] == "alice" and status["virtualCluster"] == "default"
    assert status["launchedTime"] >= status["submissionTime"]

    assert list(detail["taskRoles"]) == ["worker"]
    role = detail["taskRoles"]["worker"]
    assert role["taskRoleStatus"] == {"name": "worker"}
    tasks = role["taskStatuses"]
    assert [t["taskIndex"] for t in tasks] == [0, 1]
    ports_seen: list[int] = []
    for t in tasks:
        assert set(t) >= TASK_FIELDS, TASK_FIELDS - set(t)
        assert (t["taskState"], t["attemptState"], t["attemptId"]) == ("RUNNING", "RUNNING", 0)
        assert t["containerExitCode"] is None and t["containerExitSpec"] is None
        assert t["containerIp"] == "127.0.0.1" and t["containerId"] and t["taskUid"]
        assert t["containerGpus"] is None  # gpu: 0
        # Every task gets ssh and http ports, plus the declared ones: label -> "p1,p2".
        assert set(t["containerPorts"]) == {"ssh", "http", "syncport"}
        assert len(t["containerPorts"]["syncport"].split(",")) == 2
        for ports in t["containerPorts"].values():
            ports_seen += [int(p) for p in ports.split(",")]
        assert t["containerLog"].endswith(
            f"/jobs/{key}/attempts/0/taskRoles/worker/taskIndex/{t['taskIndex']}/attempts/0/logs"
        )
    assert len(ports_seen) == len(set(ports_seen)) == 8

    r = await api.request("jobs", key, "executionType", method="PUT", body={"value": "STOP"})
    assert r.code == 202, r.body
    detail = await api.wait_state(key, "STOPPED", timeout=20)
    status = detail["jobStatus"]
    assert status["executionType"] == "STOP"
    assert status["appExitCode"] == -210
    assert (
        status["appExitSpec"]["code"] == -210 and status["appExitSpec"]["phrase"] == "StopFrameworkRequested"
    )
    assert status["appExitType"] == "USER_STOP"
    assert status["completedTime"] >= status["launchedTime"]
    for t in detail["taskRoles"]["worker"]["taskStatuses"]:
        assert t["containerExitCode"] is not None and t["taskState"] in ("STOPPED", "FAILED")
    (summary,) = await api.list()
    assert (summary["state"], summary["appExitCode"], summary["executionType"]) == ("STOPPED", -210, "STOP")

    # Stopping again is accepted and changes nothing.
    await api.json("jobs", key, "executionType", method="PUT", body={"value": "STOP"}, expect=202)
    assert (await api.detail(key))["jobStatus"]["state"] == "STOPPED"


async def test_execution_type_validation(api, make_job):
    key = await api.submit(make_job("victim", ["sleep 60"]))
    for body in (
        {"value": "PAUSE"},
        {"value": "stop"},
        {"value": 5},
        {},
        {"other": "STOP"},
        "not json",
        ["STOP"],
    ):
        message = await api.error(
            "jobs", key, "executionType", method="PUT", body=body, status=400, code="InvalidParametersError"
        )
        assert message.startswith(("value", "body")), message
    # START is accepted (OpenPAI compatibility) and does nothing.
    await api.json("jobs", key, "executionType", method="PUT", body={"value": "START"}, expect=202)
    detail = await api.detail(key)
    assert detail["jobStatus"]["executionType"] == "START"
    assert detail["jobStatus"]["state"] in ("WAITING", "RUNNING")


async def test_finished_job_attempts_and_stop_noop(api, make_job):
    ok = await api.submit(make_job("quick", ["echo done"]))
    detail = await api.wait_state(ok, "SUCCEEDED")
    status = detail["jobStatus"]
    assert (status["appExitCode"], status["appExitSpec"]["phrase"], status["appExitType"]) == (
        0,
        "Succeeded",
        "USER_SUCCESS",
    )
    assert status["appExitTriggerTaskRoleName"] == "worker" and status["appExitTriggerTaskIndex"] == 0
    (task,) = detail["taskRoles"]["worker"]["taskStatuses"]
    assert (task["taskState"], task["containerExitCode"], task["containerExitSpec"]["code"]) == (
        "SUCCEEDED",
        0,
        0,
    )
    assert task["completedTime"] >= task["launchedTime"]
    assert await api.json("jobs", ok, "attempts", "0") == detail
    await api.error("jobs", ok, "attempts", "1", status=404, code="NoJobError")
    # Stopping a finished job is accepted and changes nothing.
    await api.json("jobs", ok, "executionType", method="PUT", body={"value": "STOP"}, expect=202)
    assert (await api.detail(ok))["jobStatus"]["state"] == "SUCCEEDED"

    # A failing job with one retry has two attempts, each with its own detail.
    bad = await api.submit(make_job("flaky", ["echo try", "exit 3"], retries=1))
    detail = await api.wait_state(bad, "FAILED")
    status = detail["jobStatus"]
    assert (status["attemptId"], status["retries"], status["retryDetails"]["user"]) == (1, 1, 1)
    assert status["appExitCode"] not in (0, None) and status["appExitSpec"]["code"] == status["appExitCode"]
    assert status["appExitTriggerTaskRoleName"] == "worker"
    assert status["appExitMessages"]["runtime"]["originUserExitCode"] == 3
    (task,) = detail["taskRoles"]["worker"]["taskStatuses"]
    assert task["originUserExitCode"] == 3 and task["containerExitCode"] == status["appExitCode"]
    first = await api.json("jobs", bad, "attempts", "0")
    assert (first["jobStatus"]["attemptId"], first["jobStatus"]["state"]) == (0, "FAILED")
    assert first["taskRoles"]["worker"]["taskStatuses"][0]["taskUid"] != task["taskUid"]
    assert await api.json("jobs", bad, "attempts", "1") == detail
    await api.error("jobs", bad, "attempts", "2", status=404, code="NoJobError")


async def test_tags(api, make_job):
    key = await api.submit(make_job("tagged"))

    async def tags():
        return (await api.detail(key))["tags"]

    reply = await api.json("jobs", key, "tag", method="PUT", body={"value": "exp"})
    assert reply["status"] == 200 and "exp" in reply["message"]
    assert await tags() == ["exp"]
    await api.json("jobs", key, "tag", method="PUT", body={"value": "exp"})  # idempotent
    await api.json("jobs", key, "tag", method="PUT", body={"value": "baseline"})
    assert await tags() == ["baseline", "exp"]
    assert (await api.list())[0]["tags"] == ["baseline", "exp"]

    await api.json("jobs", key, "tag", method="DELETE", body={"value": "exp"})
    assert await tags() == ["baseline"]
    assert "exp" in await api.error(
        "jobs", key, "tag", method="DELETE", body={"value": "exp"}, status=404, code="NoTagError"
    )
    await api.error(
        "jobs", key, "tag", method="DELETE", body={"value": "never"}, status=404, code="NoTagError"
    )

    for body in ({"value": "a,b"}, {"value": ""}, {"value": 5}, {"value": "x" * 256}, {}, "not json"):
        await api.error(
            "jobs", key, "tag", method="PUT", body=body, status=400, code="InvalidParametersError"
        )
    for body in ({"value": 5}, {}, "not json"):
        await api.error(
            "jobs", key, "tag", method="DELETE", body=body, status=400, code="InvalidParametersError"
        )
    assert await tags() == ["baseline"]
    await api.error(
        "jobs", "alice~ghost", "tag", method="DELETE", body={"value": "x"}, status=404, code="NoJobError"
    )


async def test_events(api, make_job):
    ok = await api.submit(make_job("eventful", ["echo fine"]))
    bad = await api.submit(make_job("doomed", ["exit 1"]))
    await api.wait_state(ok, "SUCCEEDED")
    await api.wait_state(bad, "FAILED")

    events = await api.json("jobs", ok, "events")
    assert events["totalCount"] == len(events["data"]) >= 3
    data = events["data"]
    assert all(e["frameworkName"] == ok for e in data)
    stamps = [e["lastTimestamp"] for e in data]
    assert stamps == sorted(stamps, reverse=True), "events are newest first"
    reasons = [e["reason"] for e in data]
    assert reasons[-1] == "Submitted" and "Submitted" not in reasons[:-1]
    assert {e["type"] for e in data} <= {"Normal", "Warning"}
    task_events = [e for e in data if e["taskroleName"] is not None]
    assert task_events and all(e["taskName"] == f"worker-{e['taskIndex']}" for e in task_events)

    failed = await api.json("jobs", bad, "events")
    warnings = await api.json("jobs", bad, "events", params={"type": "Warning"})
    normals = await api.json("jobs", bad, "events", params={"type": "Normal"})
    assert warnings["data"] and all(e["type"] == "Warning" for e in warnings["data"])
    assert normals["data"] and all(e["type"] == "Normal" for e in normals["data"])
    assert warnings["totalCount"] + normals["totalCount"] == failed["totalCount"]
    assert {e["uid"] for e in warnings["data"]} | {e["uid"] for e in normals["data"]} == {
        e["uid"] for e in failed["data"]
    }

    message = await api.error(
        "jobs", ok, "events", params={"type": "Error"}, status=400, code="InvalidParametersError"
    )
    assert message.startswith("type")
