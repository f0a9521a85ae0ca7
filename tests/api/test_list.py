"""GET /jobs: filters, ordering, paging, withTotalCount and parameter validation (OpenPAI §2.3)."""

from __future__ import annotations

SUMMARY_FIELDS = {
    "debugId", "name", "username", "state", "subState", "executionType", "tags", "retries", "retryDetails",
    "retryDelayTime", "submissionTime", "createdTime", "launchedTime", "completedTime", "appExitCode",
    "virtualCluster", "totalGpuNumber", "totalTaskNumber", "totalTaskRoleNumber", "jobPriority",
}  # fmt: skip


async def test_filters(api, make_job):
    alpha = await api.submit(make_job("alpha-one", ["echo a"]))
    beta = await api.submit(make_job("beta-two", ["echo b"], vc="research", priority="prod"))
    gamma = await api.submit(make_job("gamma-sleeper", ["sleep 30"], vc="research", instances=2))
    for key, tags in ((alpha, ["exp1"]), (beta, ["exp1", "keep"]), (gamma, ["keep"])):
        for tag in tags:
            await api.json("jobs", key, "tag", method="PUT", body={"value": tag})
    await api.wait_state(alpha, "SUCCEEDED")
    await api.wait_state(beta, "SUCCEEDED")
    await api.wait_state(gamma, "RUNNING")

    async def names(**params):
        return sorted(await api.names(**params))

    everything = ["alpha-one", "beta-two", "gamma-sleeper"]
    assert await names() == everything
    # username
    assert await names(username="alice") == everything
    assert await names(username="bob") == []
    assert await names(username="bob,alice") == everything
    # vc
    assert await names(vc="research") == ["beta-two", "gamma-sleeper"]
    assert await names(vc="default") == ["alpha-one"]
    assert await names(vc="default,research") == everything
    # state
    assert await names(state="RUNNING") == ["gamma-sleeper"]
    assert await names(state="SUCCEEDED") == ["alpha-one", "beta-two"]
    assert await names(state="SUCCEEDED,RUNNING") == everything
    assert await names(state="FAILED") == []
    assert await names(state="WAITING,STOPPED") == []
    # keyword: job name, user, or VC
    assert await names(keyword="beta") == ["beta-two"]
    assert await names(keyword="search") == ["beta-two", "gamma-sleeper"]
    assert await names(keyword="lic") == everything
    assert await names(keyword="zzz") == []
    # tags
    assert await names(tagsContain="keep") == ["beta-two", "gamma-sleeper"]
    assert await names(tagsNotContain="keep") == ["alpha-one"]
    assert await names(tagsNotContain="exp1,keep") == []
    assert await names(tagsContain="exp1", tagsNotContain="keep") == ["alpha-one"]
    # priority
    assert await names(jobPriority="prod") == ["beta-two"]
    assert await names(jobPriority="test") == ["alpha-one", "gamma-sleeper"]
    assert await names(jobPriority="prod,test") == everything
    # combined
    assert await names(vc="research", state="SUCCEEDED") == ["beta-two"]
    assert await names(vc="research", state="RUNNING", tagsContain="keep", username="alice") == [
        "gamma-sleeper"
    ]

    jobs = {j["name"]: j for j in await api.list()}
    assert set(jobs["gamma-sleeper"]) == SUMMARY_FIELDS
    g = jobs["gamma-sleeper"]
    assert (g["state"], g["username"], g["virtualCluster"], g["totalTaskNumber"], g["tags"]) == (
        "RUNNING", "alice", "research", 2, ["keep"]
    )  # fmt: skip
    assert g["executionType"] == "START" and g["appExitCode"] is None and g["completedTime"] is None
    b = jobs["beta-two"]
    assert (b["state"], b["appExitCode"], b["jobPriority"], b["tags"]) == (
        "SUCCEEDED",
        0,
        "prod",
        ["exp1", "keep"],
    )
    assert b["completedTime"] >= b["launchedTime"] >= b["submissionTime"]
    assert b["retryDetails"] == {"user": 0, "platform": 0, "resource": 0}


async def test_order_and_paging(api, make_job):
    # Submitted in this order; names and task counts disagree with it on purpose.
    jobs = [("c3", 3), ("a1", 1), ("e5", 2), ("b2", 2), ("d4", 1)]
    for name, instances in jobs:
        await api.submit(make_job(name, ["true"], instances=instances))
    submitted = [n for n, _ in jobs]

    assert await api.names() == submitted[::-1]  # default: submissionTime DESC
    assert await api.names(order="submissionTime,ASC") == submitted
    assert await api.names(order="submissionTime,DESC") == submitted[::-1]
    assert await api.names(order="jobName,ASC") == ["a1", "b2", "c3", "d4", "e5"]
    assert await api.names(order="jobName,DESC") == ["e5", "d4", "c3", "b2", "a1"]
    assert await api.names(order="jobName") == ["e5", "d4", "c3", "b2", "a1"]  # direction defaults to DESC
    by_tasks = await api.list(order="totalTaskNumber,ASC")
    assert [j["totalTaskNumber"] for j in by_tasks] == [1, 1, 2, 2, 3]
    by_tasks = await api.list(order="totalTaskNumber,DESC")
    assert [j["totalTaskNumber"] for j in by_tasks] == [3, 2, 2, 1, 1]
    # Ties keep the newest submission first.
    assert [j["name"] for j in by_tasks] == ["c3", "b2", "e5", "d4", "a1"]
    for field in ("username", "vc", "retries", "totalGpuNumber", "state", "completionTime", "jobPriority"):
        assert sorted(await api.names(order=f"{field},ASC")) == sorted(submitted), field

    # Paging on a stable order.
    assert await api.names(order="jobName,ASC", offset=1, limit=2) == ["b2", "c3"]
    assert await api.names(order="jobName,ASC", offset=4, limit=2) == ["e5"]
    assert await api.names(order="jobName,ASC", offset=10) == []
    assert await api.names(order="jobName,ASC", limit=1) == ["a1"]
    assert await api.names(order="jobName,ASC", limit=50000) == ["a1", "b2", "c3", "d4", "e5"]

    # withTotalCount: {totalCount, data}; the count ignores paging but not filters.
    page = await api.list(order="jobName,ASC", offset=1, limit=2, withTotalCount="true")
    assert set(page) == {"totalCount", "data"}
    assert page["totalCount"] == 5
    assert [j["name"] for j in page["data"]] == ["b2", "c3"]
    filtered = await api.list(keyword="d4", withTotalCount="true")
    assert filtered["totalCount"] == 1 and [j["name"] for j in filtered["data"]] == ["d4"]
    empty = await api.list(username="nobody", withTotalCount="true")
    assert empty == {"totalCount": 0, "data": []}
    assert isinstance(await api.list(withTotalCount="false"), list)


async def test_tags_contain_matches_any_listed_tag(api, make_job):
    for name, tag in (("one", "red"), ("two", "blue"), ("three", "green")):
        key = await api.submit(make_job(name))
        await api.json("jobs", key, "tag", method="PUT", body={"value": tag})
    assert sorted(await api.names(tagsContain="red,blue")) == ["one", "two"]
    assert sorted(await api.names(tagsContain="red,nothing")) == ["one"]


BAD_PARAMETERS = [
    ({"limit": "0"}, "limit"),
    ({"limit": "50001"}, "limit"),
    ({"limit": "x"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"offset": "many"}, "offset"),
    ({"order": "bogus,ASC"}, "order"),
    ({"order": "jobName,SIDEWAYS"}, "order"),
    ({"state": "BOGUS"}, "state"),
    ({"state": "RUNNING,BOGUS"}, "state"),
]


async def test_bad_parameters_are_400(api, make_job):
    await api.submit(make_job("present"))
    for params, name in BAD_PARAMETERS:
        message = await api.error("jobs", params=params, status=400, code="InvalidParametersError")
        assert message.startswith(f"{name}:"), (params, message)
        assert any(piece in message for piece in params[name].split(",") if piece != "RUNNING"), (
            params,
            message,
        )
    # The limits themselves are fine.
    assert await api.names(limit=1) == ["present"]
    assert await api.names(limit=50000) == ["present"]
