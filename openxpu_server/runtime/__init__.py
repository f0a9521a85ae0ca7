"""The task runtime: exit-code table, exit analysis, task environment, ports and GPUs.

Pure functions where possible (no store, no event loop), so the controller and every backend can
share them:

- `exit_spec`: OpenPAI's exit-code table (`lookup`, `is_transient`, `is_permanent`, `exit_type`).
- `analysis`: the runtime's exit handler (`analyze` a user exit code + log tail -> spec code).
- `env`: the PAI_* environment contract of a task (`task_environment`).
- `ports`: `PortAllocator` for host ports.
- `gpus`: GPU discovery (`detect_gpus`, `resolve_gpus`).
"""

from .analysis import (
    SUMMARY_END,
    SUMMARY_START,
    Analysis,
    analyze,
    analyze_files,
    find_exception,
    init_failure_code,
    parse_summary,
    read_tail,
)
from .env import TaskInfo, gpu_environment, task_environment
from .exit_spec import (
    ExitSpec,
    RuntimePattern,
    all_specs,
    exit_type,
    is_permanent,
    is_transient,
    lookup,
    needs_backoff,
)
from .gpus import GpuInfo, detect_gpus, parse_nvidia_smi_csv, resolve_gpus
from .ports import NoFreePortError, PortAllocator, is_port_free

__all__ = [
    "SUMMARY_END",
    "SUMMARY_START",
    "Analysis",
    "ExitSpec",
    "GpuInfo",
    "NoFreePortError",
    "PortAllocator",
    "RuntimePattern",
    "TaskInfo",
    "all_specs",
    "analyze",
    "analyze_files",
    "detect_gpus",
    "exit_type",
    "find_exception",
    "gpu_environment",
    "init_failure_code",
    "is_permanent",
    "is_port_free",
    "is_transient",
    "lookup",
    "needs_backoff",
    "parse_nvidia_smi_csv",
    "parse_summary",
    "read_tail",
    "resolve_gpus",
    "task_environment",
]
