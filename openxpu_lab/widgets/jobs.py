"""JobMonitor: my jobs with live, coloured states, the selected job's tasks, its log tail and Stop."""

from __future__ import annotations

import html
import time

import ipywidgets as w

from ..client import TERMINAL, Client, Job
from .base import LiveBox, badge

LOG_TAIL_LINES = 40


class JobMonitor(LiveBox):
    """`JobMonitor(client)`: a table of jobs (mine, or everyone's with `all_users=True`), a job picker,
    the picked job's per-task states and log tail, and a Stop button. Refreshes every `interval` s."""

    def __init__(self, client: Client, *, all_users: bool = False, limit: int = 20, interval: float | None = 2.0,
                 autostart: bool = True):
        self.client = client
        self.all_users = all_users
        self.limit = limit
        self.title = w.HTML("<b>OpenXPU jobs</b>")
        self.jobs_html = w.HTML()
        self.picker = w.Dropdown(description="job", options=[], layout=w.Layout(width="60%"))
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.tasks_html = w.HTML()
        self.log_tail = w.Textarea(value="", disabled=True, layout=w.Layout(width="100%", height="200px"))
        self.status = w.HTML()
        super().__init__(
            interval=interval,
            children=[self.title, self.jobs_html, w.HBox([self.picker, self.stop_button]), self.tasks_html,
                      self.log_tail, self.status],
        )
        self.children = (*self.children, self.error)
        self.picker.observe(lambda _: self.safe_refresh_detail(), names="value")
        self.stop_button.on_click(lambda _: self.stop_selected())
        self.jobs: list[dict] = []
        if autostart:
            self.safe_refresh()
            self.start()

    @property
    def selected(self) -> str | None:
        return self.picker.value or None

    def refresh(self) -> None:
        self.jobs = self.client.jobs(limit=self.limit) if self.all_users else self.client.my_jobs(limit=self.limit)
        rows = "".join(
            "<tr>"
            f"<td>{html.escape(j['username'] + '~' + j['name'])}</td><td>{badge(j['state'])}</td>"
            f"<td>{html.escape(j['virtualCluster'])}</td><td>{j['totalTaskNumber']}</td><td>{j['totalGpuNumber']}</td>"
            f"<td>{_duration(j)}</td>"
            "</tr>"
            for j in self.jobs
        )
        self.jobs_html.value = (
            "<table><tr><th>job</th><th>state</th><th>vc</th><th>tasks</th><th>gpus</th><th>duration</th></tr>"
            f"{rows}</table>" if self.jobs else "<i>no jobs yet</i>"
        )
        keys = [f"{j['username']}~{j['name']}" for j in self.jobs]
        current = self.picker.value
        if list(self.picker.options) != keys:
            self.picker.options = keys
        if current in keys:
            self.picker.value = current
        elif keys and current is None:
            self.picker.value = keys[0]
        self.refresh_detail()

    def safe_refresh_detail(self) -> None:
        try:
            self.refresh_detail()
        except Exception as e:
            self.error.value = f"<span style='color:#c62828'>{type(e).__name__}: {html.escape(str(e))}</span>"

    def refresh_detail(self) -> None:
        key = self.selected
        if not key:
            self.tasks_html.value, self.log_tail.value = "", ""
            self.stop_button.disabled = True
            return
        job = Job(self.client, key)
        d = job.detail()
        s = d["jobStatus"]
        tasks = Job._tasks(d)
        rows = "".join(
            f"<tr><td>{html.escape(t.name)}</td><td>{badge(t.state)}</td><td>{'' if t.exit_code is None else t.exit_code}</td></tr>"
            for t in tasks
        )
        extra = ""
        if s.get("waitReason") and s["state"] == "WAITING":
            extra = f"<div>waiting: {html.escape(s['waitReason'])}</div>"
        if s["state"] == "FAILED" and s.get("appExitDiagnostics"):
            extra = f"<pre style='color:#c62828'>{html.escape(s['appExitDiagnostics'][-2000:])}</pre>"
        self.tasks_html.value = (
            f"<div>{html.escape(key)} {badge(s['state'])}</div>"
            f"<table><tr><th>task</th><th>state</th><th>exit</th></tr>{rows}</table>{extra}"
        )
        tail = self.client.logs(key, tail=True).splitlines()[-LOG_TAIL_LINES:]
        self.log_tail.value = "\n".join(tail)
        self.stop_button.disabled = s["state"] in TERMINAL

    def stop_selected(self) -> None:
        key = self.selected
        if not key:
            return
        self.client.stop(key)
        self.status.value = f"stop requested for {html.escape(key)}"
        self.stop_button.disabled = True


def _duration(j: dict) -> str:
    start = j.get("launchedTime")
    if not start:
        return ""
    end = j.get("completedTime") or time.time() * 1000
    secs = int((end - start) / 1000)
    return f"{secs // 60}m{secs % 60:02d}s"
