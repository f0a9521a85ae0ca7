"""OpenXPU in the notebook: the REST client, `%pai_submit` magics, notebook jobs and widgets.

    %load_ext openxpu_lab            # registers %pai_submit, %%pai_submit, %pai_jobs, ...
    from openxpu_lab import Client   # the whole REST API in Python
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "DiscoveryError", "Job", "OpenXPUApiError", "load_ipython_extension"]


def __getattr__(name: str) -> Any:
    """The client is imported on first use: tasks running `python -m openxpu_lab.nbtask` never pay for it."""
    if name in ("Client", "DiscoveryError", "Job", "OpenXPUApiError"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'openxpu_lab' has no attribute {name!r}")


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext openxpu_lab`: register the magics (the client is created on first use)."""
    from .magics import OpenXPUMagics

    ip.register_magics(OpenXPUMagics(ip))
