"""QuotaView: per virtual cluster, the guaranteed, used, opportunistic and free GPUs as a plotly chart.

Guaranteed GPUs come from `GET virtual-clusters` (OpenPAI's VC objects) when the server has it;
usage comes from the running jobs, so it also works without that route: my GPUs, the others'
guaranteed GPUs, and opportunistic GPUs (jobs of priority `oppo`) are stacked per VC.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from ..client import Client
from .base import LiveBox

TRACES = (("mine", "#ff7f0e"), ("others", "#1f77b4"), ("opportunistic", "#9467bd"), ("free", "#d9d9d9"))


def _gpus(resources: Any) -> int:
    if not isinstance(resources, dict):
        return 0
    for key in ("GPUs", "gpu", "gpus"):
        if isinstance(resources.get(key), (int, float)):
            return int(resources[key])
    return 0


def quota_rows(vcs: dict[str, dict], running_jobs: list[dict], me: str) -> list[dict]:
    """One row per VC, in GPUs: guaranteed; used = mine + others + opportunistic (the others'
    jobs of priority oppo, which use idle cells); free = guaranteed not used by guaranteed jobs."""
    names = sorted(set(vcs) | {j["virtualCluster"] for j in running_jobs})
    rows = []
    for vc in names:
        info = vcs.get(vc) or {}
        jobs = [j for j in running_jobs if j["virtualCluster"] == vc and j["state"] == "RUNNING"]
        mine = sum(j["totalGpuNumber"] for j in jobs if j["username"] == me)
        theirs = [j for j in jobs if j["username"] != me]
        oppo = sum(j["totalGpuNumber"] for j in theirs if j.get("jobPriority") == "oppo")
        others = sum(j["totalGpuNumber"] for j in theirs) - oppo
        mine_oppo = sum(j["totalGpuNumber"] for j in jobs if j["username"] == me and j.get("jobPriority") == "oppo")
        guaranteed = _gpus(info.get("resourcesGuaranteed")) or _gpus(info.get("resourcesTotal"))
        rows.append(
            {
                "vc": vc,
                "guaranteed": guaranteed,
                "used": mine + others + oppo,
                "mine": mine,
                "others": others,
                "opportunistic": oppo,
                "free": max(guaranteed - (mine - mine_oppo) - others, 0),
            }
        )
    return rows


class QuotaView(LiveBox):
    """`QuotaView(client)`: a stacked bar per VC (mine / others / opportunistic / free) with the
    guaranteed quota as a marker, refreshed every `interval` seconds; `rows` has the numbers."""

    def __init__(self, client: Client, *, interval: float | None = 5.0, autostart: bool = True):
        self.client = client
        self.figure = go.FigureWidget(
            data=[go.Bar(name=name, x=[], y=[], marker_color=color) for name, color in TRACES]
            + [go.Scatter(name="guaranteed", x=[], y=[], mode="markers", marker={"symbol": "line-ew-open", "size": 30, "color": "black"})],
            layout=go.Layout(barmode="stack", title="GPUs per virtual cluster", yaxis={"title": "GPUs"}, height=320),
        )
        self.summary = w.HTML()
        super().__init__(interval=interval, children=[self.figure, self.summary])
        self.children = (*self.children, self.error)
        self.rows: list[dict] = []
        if autostart:
            self.safe_refresh()
            self.start()

    def refresh(self) -> None:
        me = self.client.user
        self.rows = quota_rows(self.client.virtual_clusters(), self.client.jobs(state="RUNNING"), me)
        x = [r["vc"] for r in self.rows]
        values = {name: [r[name] for r in self.rows] for name, _ in TRACES}
        with self.figure.batch_update():
            for trace in self.figure.data[: len(TRACES)]:
                trace.x, trace.y = x, values[trace.name]
            self.figure.data[-1].x, self.figure.data[-1].y = x, [r["guaranteed"] for r in self.rows]
        self.summary.value = " · ".join(
            f"<b>{r['vc']}</b>: {r['used']}/{r['guaranteed']} GPUs used, {r['mine']} mine, {r['free']} free"
            for r in self.rows
        ) or "<i>no virtual clusters</i>"

