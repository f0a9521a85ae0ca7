"""Widget state after updates, at the model level (children, values, figure data), against a live server."""

from __future__ import annotations

import time

import nbformat
import plotly.graph_objects as go

from openxpu_lab.widgets import JobMonitor, MarketplaceBrowser, QuotaView, quota_rows


def sleeper(name: str, gpu: int = 0, priority: str | None = None) -> dict:
    job = {
        "protocolVersion": 2, "name": name, "type": "job",
        "prerequisites": [{"type": "dockerimage", "name": "i", "uri": "python:3.11"}],
        "taskRoles": {"worker": {"instances": 1, "dockerImage": "i",
                                 "resourcePerInstance": {"cpu": 1, "memoryMB": 64, "gpu": gpu},
                                 "commands": ["echo tick-$PAI_CURRENT_TASK_ROLE_NAME", "sleep 60"]}},
    }
    if priority:
        job["extras"] = {"hivedScheduler": {"jobPriorityClass": priority}}
    return job


def until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_job_monitor_shows_live_state_tasks_log_and_stops(client):
    job = client.submit(sleeper("monitored"), unique=True)
    until(lambda: job.state == "RUNNING" and "tick-worker" in job.logs())
    mon = JobMonitor(client, interval=None, autostart=False)
    mon.refresh()
    assert job.key in mon.picker.options and mon.picker.value == job.key  # newest first, picked
    assert job.key in mon.jobs_html.value and ">RUNNING<" in mon.jobs_html.value
    assert "#268bd2" in mon.jobs_html.value  # RUNNING's colour
    assert "worker-0" in mon.tasks_html.value and ">RUNNING<" in mon.tasks_html.value
    assert "[worker-0] tick-worker" in mon.log_tail.value
    assert mon.stop_button.disabled is False
    assert mon.log_tail in mon.children and mon.tasks_html in mon.children
    mon.stop_button.click()
    assert "stop requested" in mon.status.value and mon.stop_button.disabled
    until(lambda: job.state == "STOPPED")
    mon.refresh()
    assert ">STOPPED<" in mon.jobs_html.value and mon.stop_button.disabled


def test_job_monitor_refreshes_in_the_background_and_stops_when_closed(client):
    mon = JobMonitor(client, interval=0.2)
    assert mon.refreshing
    job = client.submit(sleeper("late-arrival"), unique=True)
    until(lambda: job.key in mon.picker.options)  # appeared without calling refresh()
    job.stop()
    mon.close()
    assert not mon.refreshing
    job.wait(30)


def test_quota_view_plots_my_usage_per_vc(client, live_server):
    mine = client.submit(sleeper("gpu-user", gpu=1), unique=True)
    until(lambda: mine.state == "RUNNING")
    view = QuotaView(client, interval=None, autostart=False)
    view.refresh()
    assert isinstance(view.figure, go.FigureWidget) and view.figure in view.children
    traces = {t.name: t for t in view.figure.data}
    assert set(traces) == {"mine", "others", "opportunistic", "free", "guaranteed"}
    row = next(r for r in view.rows if r["vc"] == "default")
    assert row["mine"] == 1 and row["used"] == 1
    i = list(traces["mine"].x).index("default")
    assert traces["mine"].y[i] == 1 and traces["others"].y[i] == 0
    assert traces["guaranteed"].y[i] == row["guaranteed"]
    assert "1 mine" in view.summary.value
    mine.stop()
    until(lambda: mine.state == "STOPPED")
    view.refresh()
    i = list(view.figure.data[0].x).index("default")
    assert view.figure.data[0].y[i] == 0
    view.close()


def test_quota_rows_split_mine_others_and_opportunistic():
    vcs = {"default": {"resourcesGuaranteed": {"GPUs": 4}}, "vc2": {"resourcesGuaranteed": {"gpu": 2}}}
    jobs = [
        {"virtualCluster": "default", "state": "RUNNING", "totalGpuNumber": 1, "username": "me", "jobPriority": "test"},
        {"virtualCluster": "default", "state": "RUNNING", "totalGpuNumber": 2, "username": "bob", "jobPriority": "prod"},
        {"virtualCluster": "vc2", "state": "RUNNING", "totalGpuNumber": 3, "username": "bob", "jobPriority": "oppo"},
    ]
    rows = {r["vc"]: r for r in quota_rows(vcs, jobs, "me")}
    assert rows["default"] == {"vc": "default", "guaranteed": 4, "used": 3, "mine": 1, "others": 2,
                               "opportunistic": 0, "free": 1}
    assert rows["vc2"] == {"vc": "vc2", "guaranteed": 2, "used": 3, "mine": 0, "others": 0,
                           "opportunistic": 3, "free": 2}


def test_marketplace_browser_search_preview_submit_and_open(client, tmp_path):
    b = MarketplaceBrowser(client, folder=tmp_path)
    names = [label.split(" — ")[0] for label, _ in b.results.options]
    assert {"hello-distributed", "notebook-job", "pytorch-ddp-cpu"} <= set(names)
    assert "distributed" in dict(b.tag.options).values()
    b.search.value = "parameter-server"  # observers refresh the list
    assert [label.split(" — ")[0] for label, _ in b.results.options] == ["parameter-server"]
    assert b.item["name"] == "parameter-server" and "taskRoles" in b.yaml_view.value
    assert "<h1>Parameter server" in b.description_html.value
    b.search.value = ""
    b.tag.value = "notebook"
    assert {label.split(" — ")[0] for label, _ in b.results.options} == {"notebook-job", "papermill-sweep"}
    b.results.value = next(v for label, v in b.results.options if label.startswith("notebook-job"))
    path = b.open_selected()
    nb = nbformat.read(path, 4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells) and path.name == "notebook-job.ipynb"
    jobs = b.submit_selected()
    assert len(jobs) == 1 and "submitted " + jobs[0].key in b.status.value
    assert jobs[0].wait(120) == "SUCCEEDED", jobs[0].exit_diagnostics
    b.star_button.value = True
    assert client.marketplace_item(b.item["id"])["starred"] is True
    b.refresh()
    assert "1 uses" in dict((v, k) for k, v in b.results.options)[b.item["id"]]
    b.search.value = "no-such-template-anywhere"
    assert b.results.options == () and b.submit_button.disabled
    b.close()
