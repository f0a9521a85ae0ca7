"""Scheduler simulation: traces, baseline schedulers, a discrete-event simulator and reports.

- `trace`: the trace CSV format, `load_trace`, `gen_trace` (synthetic, Philly-like).
- `baselines`: `QuotaScheduler` (YARN-like capacity) and `FifoScheduler` (global FIFO).
- `simulator`: `Simulation`, driving any `Scheduler` in virtual time.
- `experiment`: `run_experiment` (metrics, sharing anomaly, schedulers side by side).
- `report`: JSON and HTML (plotly) output; `cli`: the `openxpu sim` commands.

See docs/simulator.md.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FifoScheduler": "baselines",
    "QuotaScheduler": "baselines",
    "SimResult": "simulator",
    "Simulation": "simulator",
    "TraceError": "trace",
    "TraceJob": "trace",
    "gen_trace": "trace",
    "gen_trace_for_layout": "trace",
    "load_trace": "trace",
    "write_trace": "trace",
    "make_scheduler": "experiment",
    "run_experiment": "experiment",
    "simulate": "experiment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # lazy: `openxpu sim` must not slow down the CLI's start
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
