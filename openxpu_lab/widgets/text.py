"""Plain-text tables: what the magics print in a terminal IPython (no widgets there)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    rows = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{n}}}" for n in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * n for n in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def jobs_table(jobs: list[dict]) -> str:
    if not jobs:
        return "no jobs"
    return table(
        ("job", "state", "vc", "tasks", "gpus", "submitted", "exit"),
        (
            (
                f"{j['username']}~{j['name']}", j["state"], j["virtualCluster"], j["totalTaskNumber"],
                j["totalGpuNumber"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j["submissionTime"] / 1000)),
                j.get("appExitCode"),
            )
            for j in jobs
        ),
    )


def quota_table(rows: list[dict]) -> str:
    if not rows:
        return "no virtual clusters"
    return table(
        ("vc", "guaranteed", "used", "mine", "others", "opportunistic", "free"),
        ((r["vc"], r["guaranteed"], r["used"], r["mine"], r["others"], r["opportunistic"], r["free"]) for r in rows),
    )


def marketplace_table(items: list[dict]) -> str:
    if not items:
        return "no templates"
    return table(
        ("id", "name", "author", "tags", "uses", "stars", "summary"),
        (
            (i["id"][:8], i["name"], i["author"], ",".join(i["tags"]), i["useCount"], i["starCount"],
             (i["summary"][:60] + "...") if len(i["summary"]) > 63 else i["summary"])
            for i in items
        ),
    )
