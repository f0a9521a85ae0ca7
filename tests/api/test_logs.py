"""Task attempts (OpenPAI §2.5), log locations and log content: whole, tail, offset and follow."""

from __future__ import annotations

import asyncio
import json
import time

LOG_NAMES = {"stdout", "stderr", "all"}


async def test_task_attempts(api, make_job):
    key = await api.submit(make_job("history", ["echo hi"], instances=2))
    detail = await api.wait_state(key, "SUCCEEDED")
    statuses = detail["taskRoles"]["worker"]["taskStatuses"]

    for index in (0, 1):
        history = await api.json(*api.task_parts(key, index=index))
        assert (history["taskIndex"], history["taskState"], history["retries"]) == (index, "SUCCEEDED", 0)
        assert (history["username"], history["jobName"], history["jobAttemptId"], history["taskRoleName"]) == (
            "alice", "history", 0, "worker"
        )  # fmt: skip
        assert history["taskUid"] == statuses[index]["taskUid"]
        (attempt,) = history["attempts"]
        assert (attempt["attemptId"], attempt["attemptState"], attempt["containerExitCode"]) == (
            0,
            "SUCCEEDED",
            0,
        )
        assert attempt["containerLog"] == statuses[index]["containerLog"]
        assert attempt["containerId"] == statuses[index]["containerId"]
        assert attempt["currentAttemptCompletedTime"] >= attempt["currentAttemptLaunchedTime"]

    await api.error(*api.task_parts(key, role="ps"), status=404, code="NoTaskError")
    await api.error(*api.task_parts(key, index=5), status=404, code="NoTaskError")
    await api.error(*api.task_parts(key, attempt=3), status=404, code="NoTaskError")
    await api.error(*api.task_parts("alice~ghost"), status=404, code="NoJobError")


async def test_log_locations(api, make_job, jp_base_url):
    key = await api.submit(make_job("located", ["echo hi"]))
    await api.wait_state(key, "SUCCEEDED")
    parts = (*api.task_parts(key), "0", "logs")

    locations = (await api.json(*parts))["locations"]
    assert {loc["name"] for loc in locations} == LOG_NAMES and len(locations) == 3
    base = f"{jp_base_url}openxpu/api/v2/jobs/{key}/attempts/0/taskRoles/worker/taskIndex/0/attempts/0/logs"
    for loc in locations:
        assert loc["uri"] == f"{base}/{loc['name']}"
        # The URI is a working route of this server.
        relative = loc["uri"][len(jp_base_url) :].split("/")
        r = await api.request(*relative[3:])
        assert r.code == 200 and r.headers["Content-Type"].startswith("text/plain"), (loc, r.code)

    tailed = (await api.json(*parts, params={"tail-mode": "true"}))["locations"]
    assert {loc["uri"] for loc in tailed} == {f"{base}/{n}?tail-mode=true" for n in LOG_NAMES}

    await api.error(*api.task_parts(key), "7", "logs", status=404, code="NoTaskLogError")
    await api.error(*api.task_parts(key, index=2), "0", "logs", status=404, code="NoTaskError")
    await api.error(*api.task_parts("alice~ghost"), "0", "logs", status=404, code="NoJobError")


async def test_log_content_full_tail_and_offset(api, make_job):
    key = await api.submit(
        make_job("chatty", ["echo out-1", "echo err-1 >&2", "echo out-2", "seq 1 10000 >&2"])
    )
    await api.wait_state(key, "SUCCEEDED")
    numbers = "".join(f"{i}\n" for i in range(1, 10001)).encode()

    async def log(name, **params):
        r = await api.request(*api.log_parts(key, name), params={k: str(v) for k, v in params.items()})
        assert r.code == 200, r.body
        assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
        return r.body, int(r.headers["X-OpenXPU-Log-Offset"])

    stdout, end = await log("stdout")
    assert stdout == b"out-1\nout-2\n" and end == len(stdout)
    stderr, end = await log("stderr")
    assert stderr == b"err-1\n" + numbers and end == len(stderr)
    everything, end = await log("all")
    assert end == len(everything) == len(stdout) + len(stderr)
    # Both streams, each in its own order (how they interleave depends on the pipes' timing).
    assert sorted(everything.splitlines()) == sorted((stdout + stderr).splitlines())
    assert everything.endswith(b"10000\n")

    # tail-mode: the last 16 KiB only; a short log is returned whole.
    tail, end = await log("stderr", **{"tail-mode": "true"})
    assert len(tail) == 16 * 1024 and stderr.endswith(tail) and end == len(stderr)
    assert await log("stdout", **{"tail-mode": "true"}) == (stdout, len(stdout))

    # offset: what follows it, and the offset to resume from.
    rest, end = await log("stdout", offset=6)
    assert rest == b"out-2\n" and end == len(stdout)
    assert await log("stdout", offset=len(stdout)) == (b"", len(stdout))
    assert await log("stdout", offset=len(stdout) + 100) == (stdout, len(stdout))  # past the end: from 0
    assert await log("stdout", offset=0, **{"tail-mode": "true"}) == (stdout, len(stdout))
    for bad in ("-1", "x", "1.5"):
        message = await api.error(
            *api.log_parts(key, "stdout"), params={"offset": bad}, status=400, code="InvalidParametersError"
        )
        assert message.startswith("offset"), message

    # Unknown logs, task attempts, tasks and jobs.
    await api.error(*api.log_parts(key, "nope"), status=404, code="NoTaskLogError")
    await api.error(*api.log_parts(key, "stdout", task_attempt=4), status=404, code="NoTaskLogError")
    await api.error(*api.log_parts(key, "stdout", index=3), status=404, code="NoTaskError")
    await api.error(*api.log_parts(key, "stdout", attempt=1), status=404, code="NoTaskError")
    await api.error(*api.log_parts("alice~ghost", "stdout"), status=404, code="NoJobError")
    await api.error(*api.log_parts(key, "STDOUT"), status=404, code="NoApiError")  # not a log name at all


async def test_log_follow_streams_until_the_job_ends(api, make_job):
    commands = ["for i in 1 2 3 4 5; do echo line-$i; sleep 0.3; done"]
    key = await api.submit(make_job("follower", commands))
    await api.wait_tasks_running(key)
    # The log file appears once the task runs; wait for it (a 404 NoTaskLogError until then).
    deadline = time.monotonic() + 15
    while (await api.request(*api.log_parts(key, "stdout"))).code != 200:
        assert time.monotonic() < deadline, "stdout never appeared"
        await asyncio.sleep(0.05)

    chunks: list[tuple[float, bytes]] = []
    started = time.monotonic()
    r = await api.request(
        *api.log_parts(key, "stdout"),
        params={"follow": "true"},
        streaming_callback=lambda data: chunks.append((time.monotonic(), data)),
        request_timeout=30,
    )
    ended = time.monotonic()
    assert r.code == 200
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
    assert "X-OpenXPU-Log-Offset" not in r.headers  # headers leave before the end is known
    body = b"".join(c for _, c in chunks)
    assert body == b"".join(f"line-{i}\n".encode() for i in range(1, 6)), body
    # It streamed: output arrived in several pieces, the first well before the stream ended.
    assert len(chunks) >= 2, chunks
    assert chunks[0][0] - started < ended - started - 0.5, (chunks, ended - started)
    # And it ended because the job did.
    assert (await api.detail(key))["jobStatus"]["state"] == "SUCCEEDED"

    # Following a finished job's log returns it all and ends; `offset` still applies.
    r = await api.request(*api.log_parts(key, "stdout"), params={"follow": "true", "offset": "7"})
    assert r.code == 200 and r.body == b"".join(f"line-{i}\n".encode() for i in range(2, 6))
    r = await api.request(*api.log_parts(key, "all"), params={"follow": "true", "tail-mode": "true"})
    assert r.body.endswith(b"line-5\n")


async def test_logs_of_a_waiting_task_are_404(api, make_job):
    # Both VCs' GPUs are taken (research's too, so nothing is idle to borrow): the waiter waits,
    # with no task attempt yet.
    other = await api.submit(make_job("research-hog", ["sleep 60"], gpu=2, instances=2, vc="research"))
    await api.wait_tasks_running(other)
    hog = await api.submit(make_job("hog", ["sleep 60"], gpu=2, instances=2))
    await api.wait_tasks_running(hog)
    waiting = await api.submit(make_job("waiter", ["echo never"], gpu=1))
    deadline = time.monotonic() + 15
    while not (detail := await api.detail(waiting))["jobStatus"]["waitReason"]:
        assert time.monotonic() < deadline, f"no waitReason: {detail['jobStatus']}"
        await asyncio.sleep(0.05)
    assert detail["jobStatus"]["state"] == "WAITING"
    message = await api.error(*api.log_parts(waiting, "stdout"), status=404, code="NoTaskLogError")
    assert message
    await api.error(*api.task_parts(waiting), "0", "logs", status=404, code="NoTaskLogError")
    summary = {j["name"]: j for j in await api.list()}
    assert summary["waiter"]["state"] == "WAITING" and summary["hog"]["state"] == "RUNNING"
    assert json.dumps(summary)  # serialisable as documented
