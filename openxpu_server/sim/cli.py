"""`openxpu sim`: run a trace through a scheduler in simulated time, or generate a trace.

    openxpu sim --layout L.yaml --trace T.csv [--scheduler hived|quota|fifo] [--compare]
                --out report.json [--html report.html]
    openxpu sim gen-trace --out T.csv [--jobs N] [--seed S] [--vcs a,b,c | --layout L.yaml]

The main CLI mounts the group with `main.add_command(sim)`.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

SCHEDULERS = ("hived", "quota", "fifo")  # = experiment.SCHEDULERS (not imported: keeps the CLI's start fast)


def _progress(p: dict) -> None:
    """A progress line on stderr (the simulator calls this every few wall seconds)."""
    click.echo(
        f"[{p['scheduler']}] t={p['t'] / 3600:.1f} h  done {p['done']}/{p['total']}  "
        f"waiting {p['waiting']}  running {p['running']}  ({p['wall_s']:.1f} s)",
        err=True,
    )


def _load_layout(path: str):
    from ..scheduler.layout import load_layout

    try:
        return load_layout(path)
    except ValueError as e:
        raise click.ClickException(f"{path}: {e}") from e


@click.group("sim", invoke_without_command=True)
@click.option("--layout", "layout_path", type=click.Path(exists=True, dir_okay=False), help="Cluster layout YAML.")
@click.option("--trace", "trace_path", type=click.Path(exists=True, dir_okay=False), help="Trace CSV (see gen-trace).")
@click.option(
    "--scheduler", type=click.Choice(SCHEDULERS), default="hived", show_default=True, help="Scheduler to simulate."
)
@click.option("--compare", is_flag=True, help="Run hived, quota and fifo on the same trace, side by side.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Also write an HTML report with charts.")
@click.option("--time-limit", type=float, default=None, help="Stop at this virtual time (seconds).")
@click.option("--no-anomaly", is_flag=True, help="Skip the private-cluster runs (no sharing anomaly).")
@click.option("--reclaim", is_flag=True, help="quota: preempt borrowers to give VCs back their capacity.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
@click.pass_context
def sim(ctx, layout_path, trace_path, scheduler, compare, out, html_path, time_limit, no_anomaly, reclaim, quiet):
    """Simulate a job trace on a cluster layout in virtual time and report queuing delay, JCT,
    utilization, fragmentation, preemptions and the sharing anomaly (docs/simulator.md)."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, v in (("--layout", layout_path), ("--trace", trace_path), ("--out", out)) if not v]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use a subcommand: gen-trace)")
    from .experiment import run_experiment
    from .report import SUMMARY_HEADER, summary_rows, write_html, write_json
    from .trace import TraceError, load_trace

    layout = _load_layout(layout_path)
    try:
        jobs = load_trace(trace_path)
    except TraceError as e:
        raise click.ClickException(str(e)) from e
    kinds = list(SCHEDULERS) if compare else [scheduler]
    if "hived" in kinds:
        try:
            import openxpu_server.scheduler.hived  # noqa: F401
        except ImportError as e:
            raise click.ClickException(f"the hived scheduler is not available: {e}") from e
    if html_path:
        try:
            import plotly  # noqa: F401
        except ImportError as e:
            raise click.ClickException(f"--html needs plotly (pip install plotly): {e}") from e
    progress = None if quiet else _progress
    if not quiet:
        click.echo(f"simulating {len(jobs)} jobs with {', '.join(kinds)}", err=True)
    t0 = time.perf_counter()
    try:
        report = run_experiment(
            layout,
            jobs,
            kinds,
            anomaly=not no_anomaly,
            options={"quota": {"reclaim": True}} if reclaim else None,
            time_limit=time_limit,
            progress=progress,
            layout_name=Path(layout_path).name,
            trace_name=Path(trace_path).name,
        )
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    write_json(report, out)
    if html_path:
        write_html(report, html_path)
    rows = summary_rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(SUMMARY_HEADER)]
    for r in [SUMMARY_HEADER, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    where = out + (f" and {html_path}" if html_path else "")
    if not quiet:
        click.echo(f"wrote {where} in {time.perf_counter() - t0:.1f} s", err=True)


@sim.command("gen-trace")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Trace CSV to write.")
@click.option("--jobs", default=5000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--vcs", default=None, help="Comma list of VCs, each NAME or NAME=share (default vc1..vc4).")
@click.option("--layout", "layout_path", type=click.Path(exists=True, dir_okay=False), help="Take VCs, quotas and sizes from a layout.")
@click.option("--load", default=0.75, show_default=True, type=click.FloatRange(min=0.01), help="Offered load (1.0 = the cluster's GPUs).")
@click.option(
    "--load-spread", default=0.3, show_default=True, type=click.FloatRange(0, 0.99),
    help="VC loads range over load x (1 +- spread) of their shares.",
)
@click.option("--gpus", default=1600, show_default=True, type=click.IntRange(min=1), help="Cluster GPUs (without --layout).")
@click.option("--gpus-per-node", default=8, show_default=True, type=click.IntRange(min=1), help="Without --layout.")
def gen_trace_cmd(out, jobs, seed, vcs, layout_path, load, load_spread, gpus, gpus_per_node):
    """Write a synthetic Philly-like trace: mostly 1-GPU jobs, heavy-tailed run times, diurnal and
    bursty arrivals, VCs loaded unevenly (docs/simulator.md)."""
    from .trace import gen_trace, gen_trace_for_layout

    if vcs and layout_path:
        raise click.UsageError("give --vcs or --layout, not both (with --layout the VCs are the layout's)")
    try:
        if layout_path:
            trace = gen_trace_for_layout(
                out, _load_layout(layout_path), jobs=jobs, seed=seed, load=load, load_spread=load_spread
            )
        else:
            trace = gen_trace(
                out, jobs=jobs, seed=seed, vcs=_parse_vcs(vcs) if vcs else None, total_gpus=gpus,
                gpus_per_node=gpus_per_node, load=load, load_spread=load_spread,
            )
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    span = trace[-1].submit_time - trace[0].submit_time
    click.echo(f"wrote {len(trace)} jobs over {span / 3600:.1f} h to {out}", err=True)


def _parse_vcs(text: str) -> list[str] | dict[str, float]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise click.BadParameter("no VC names", param_hint="--vcs")
    if not any("=" in x for x in items):
        return items
    out = {}
    for x in items:
        name, sep, share = x.partition("=")
        try:
            out[name.strip()] = float(share) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"{x!r}: the share after '=' must be a number", param_hint="--vcs") from None
    return out


if __name__ == "__main__":  # python -m openxpu_server.sim.cli ... (before the main CLI mounts it)
    sim()
