"""Writing a simulation report: JSON (the `run_experiment` dict) and a self-contained HTML page
with plotly charts (plotly.js inlined, so the file opens offline)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

HOUR = 3600.0


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def _fmt(x: Any, scale: float = 1.0, nd: int = 2, suffix: str = "") -> str:
    if x is None:
        return "–"
    if isinstance(x, (int, float)):
        return f"{x / scale:.{nd}f}{suffix}"
    return html.escape(str(x))


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per scheduler: the headline metrics (also used by the docs table)."""
    rows = []
    for kind, s in report["schedulers"].items():
        o = s["overall"]
        an = o.get("sharing_anomaly") or {}
        rows.append(
            [
                kind,
                f"{o['finished']}/{o['jobs']}",
                _fmt(o["queue_delay_s"]["mean"], HOUR),
                _fmt(o["queue_delay_s"]["p50"], HOUR),
                _fmt(o["queue_delay_s"]["p95"], HOUR),
                _fmt(o["jct_s"]["mean"], HOUR),
                _fmt(o["jct_s"]["p95"], HOUR),
                _fmt(o.get("utilization_busy"), 0.01, 1, " %"),
                _fmt(o["free_nodes_mean"], 1, 1),
                _fmt(o["fragmentation"], 0.01, 1, " %"),
                str(o["preemptions"]),
                _fmt(o["lost_gpu_hours"], 1, 0),
                _fmt(an.get("max")),
                _fmt(an.get("max_guaranteed")),
                ", ".join(an.get("vcs_worse_than_private") or []) or ("none" if an else "–"),
                ", ".join(an.get("vcs_worse_than_private_guaranteed") or []) or ("none" if an else "–"),
                _fmt(o["decision_ms_mean"], 1, 3),
            ]
        )
    return rows


SUMMARY_HEADER = [
    "scheduler",
    "finished",
    "queue delay mean (h)",
    "p50 (h)",
    "p95 (h)",
    "JCT mean (h)",
    "JCT p95 (h)",
    "utilization (arrivals)",
    "fully free nodes (mean)",
    "fragmentation",
    "preemptions",
    "GPU h lost to preemption",
    "worst sharing anomaly",
    "worst (guaranteed jobs)",
    "VCs worse off than private",
    "(guaranteed jobs)",
    "decision ms (mean)",
]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _vc_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind, s in report["schedulers"].items():
        for vc, m in s["vcs"].items():
            private = m.get("private_queue_delay_s") or {}
            rows.append(
                [
                    kind,
                    html.escape(vc),
                    _fmt(m.get("quota_gpus"), 1, 0),
                    str(m["jobs"]),
                    _fmt(m["queue_delay_s"]["mean"], HOUR),
                    _fmt(m["queue_delay_s"]["p95"], HOUR),
                    _fmt(private.get("mean"), HOUR),
                    _fmt(m.get("sharing_anomaly")),
                    _fmt(m.get("sharing_anomaly_guaranteed")),
                    _fmt(m["jct_s"]["mean"], HOUR),
                    _fmt(m["gpu_hours"], 1, 0),
                    str(m["preemptions"]),
                ]
            )
    return rows


VC_HEADER = [
    "scheduler",
    "VC",
    "quota GPUs",
    "jobs",
    "queue delay mean (h)",
    "p95 (h)",
    "private mean (h)",
    "sharing anomaly",
    "anomaly (guaranteed)",
    "JCT mean (h)",
    "GPU hours",
    "preemptions",
]


def figures(report: dict[str, Any]) -> list:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    kinds = list(report["schedulers"])
    vcs = sorted({vc for s in report["schedulers"].values() for vc in s["vcs"]})
    figs = []

    delay = make_subplots(rows=1, cols=2, subplot_titles=("mean queuing delay (h)", "p95 queuing delay (h)"))
    for kind in kinds:
        s = report["schedulers"][kind]["vcs"]
        for col, key in ((1, "mean"), (2, "p95")):
            y = [((s.get(vc) or {}).get("queue_delay_s") or {}).get(key) for vc in vcs]
            delay.add_trace(
                go.Bar(name=kind, x=vcs, y=[v / HOUR if v is not None else None for v in y], legendgroup=kind, showlegend=col == 1),
                row=1, col=col,
            )
    delay.update_layout(title="Queuing delay per VC", barmode="group", height=420)
    figs.append(delay)

    util = go.Figure()
    free = go.Figure()
    for kind in kinds:
        series = report["schedulers"][kind]["series"]
        t = [x / HOUR for x in series["t_s"]]
        util.add_trace(go.Scatter(name=kind, x=t, y=series["utilization"], mode="lines"))
        free.add_trace(go.Scatter(name=kind, x=t, y=series["free_nodes"], mode="lines"))
    util.update_layout(title="GPU utilization over time", xaxis_title="hours", yaxis_title="used / total GPUs", height=380)
    free.update_layout(
        title="Fragmentation: fully free nodes over time", xaxis_title="hours", yaxis_title="nodes with no cell in use", height=380
    )
    figs += [util, free]

    anomaly = make_subplots(
        rows=1, cols=3,
        subplot_titles=(
            "shared / private mean queuing delay",
            "the same, guaranteed jobs only",
            "shared − private mean queuing delay (h)",
        ),
    )
    for kind in kinds:
        s = report["schedulers"][kind]["vcs"]
        for col, key in ((1, "sharing_anomaly"), (2, "sharing_anomaly_guaranteed")):
            anomaly.add_trace(
                go.Bar(name=kind, x=vcs, y=[(s.get(vc) or {}).get(key) for vc in vcs], legendgroup=kind, showlegend=col == 1),
                row=1, col=col,
            )
        deltas = [(s.get(vc) or {}).get("sharing_anomaly_delta_s") for vc in vcs]
        anomaly.add_trace(
            go.Bar(name=kind, x=vcs, y=[d / HOUR if d is not None else None for d in deltas], legendgroup=kind, showlegend=False),
            row=1, col=3,
        )
    anomaly.add_hline(y=1.0, line_dash="dash", row=1, col=1)
    anomaly.add_hline(y=1.0, line_dash="dash", row=1, col=2)
    anomaly.update_layout(
        title="Sharing anomaly per VC (above 1 / above 0: worse off than alone on its quota)", barmode="group", height=420
    )
    figs.append(anomaly)
    return figs


def write_html(report: dict[str, Any], path: str | Path) -> None:
    parts = []
    for i, fig in enumerate(figures(report)):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    lay, trace = report["layout"], report["trace"]
    intro = (
        f"<p>Layout <b>{html.escape(str(lay.get('name') or ''))}</b>: {lay['nodes']} nodes, {lay['gpus']} GPUs "
        f"({lay['leaf_cells']} leaf cells). Trace <b>{html.escape(str(trace.get('name') or ''))}</b>: {trace['jobs']} jobs "
        f"over {trace['span_s'] / HOUR:.1f} h, {trace['gpu_hours_demanded']:.0f} GPU hours.</p>"
    )
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>OpenXPU scheduler simulation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
</style></head><body>
<h1>OpenXPU scheduler simulation</h1>
{intro}
<h2>Summary</h2>
{_table(SUMMARY_HEADER, summary_rows(report))}
<h2>Charts</h2>
{"".join(parts)}
<h2>Per virtual cluster</h2>
{_table(VC_HEADER, _vc_rows(report))}
<p>Metric definitions: docs/simulator.md.</p>
</body></html>
"""
    Path(path).write_text(doc, encoding="utf-8")
