"""GPU discovery on the local host.

NVML (through `pynvml`, package nvidia-ml-py) when it is importable and works, else
`nvidia-smi --query-gpu=...` when it is on PATH, else no GPUs. Never raises: a host without
NVIDIA hardware or drivers simply has no GPUs. Indices are NVML / nvidia-smi indices (PCI bus
order), which is what `env.gpu_environment` exposes to tasks.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

NVIDIA_SMI_QUERY = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
NVIDIA_SMI_TIMEOUT_S = 10


@dataclass
class GpuInfo:
    index: int
    uuid: str
    name: str
    memory_mb: int


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _detect_nvml() -> list[GpuInfo] | None:
    """GPUs via NVML; None when pynvml is missing or NVML cannot initialise."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError, missing libnvidia-ml.so, ...
        log.debug("NVML unavailable: %s", e)
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    index=i,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_mb=int(memory.total) // (1024 * 1024),
                )
            )
        return gpus
    except Exception as e:
        log.warning("NVML query failed: %s", e)
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def parse_nvidia_smi_csv(text: str) -> list[GpuInfo]:
    """Parse `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`.

    Malformed lines are skipped; a memory value nvidia-smi cannot report ("[N/A]") becomes 0.
    """
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4:
            continue
        index, uuid, memory = fields[0], fields[1], fields[-1]
        name = ", ".join(fields[2:-1])  # a name containing a comma survives
        try:
            idx = int(index)
        except ValueError:
            continue
        try:
            memory_mb = int(float(memory))
        except ValueError:
            memory_mb = 0
        gpus.append(GpuInfo(index=idx, uuid=uuid, name=name, memory_mb=memory_mb))
    return gpus


def _detect_nvidia_smi() -> list[GpuInfo] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, *NVIDIA_SMI_QUERY],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("nvidia-smi failed: %s", e)
        return []
    if proc.returncode != 0:
        log.warning("nvidia-smi exited with %s: %s", proc.returncode, proc.stderr.strip()[:500])
        return []
    return parse_nvidia_smi_csv(proc.stdout)


def detect_gpus() -> list[GpuInfo]:
    """The host's NVIDIA GPUs, sorted by index ([] when there are none or detection fails)."""
    gpus = _detect_nvml()
    if gpus is None:
        gpus = _detect_nvidia_smi()
    return sorted(gpus or [], key=lambda g: g.index)


def resolve_gpus(declared: int | list[int] | None) -> list[int]:
    """The GPU indices the server may hand out: configuration wins, else what is detected.

    `declared` = n -> [0, ..., n-1] (also for fake GPUs on hosts without any); a list is used
    as given (order kept; a repeated index is an error); None -> the detected devices.
    """
    if declared is None:
        return [g.index for g in detect_gpus()]
    if isinstance(declared, bool):
        raise ValueError(f"invalid GPU declaration {declared!r}")
    if isinstance(declared, int):
        if declared < 0:
            raise ValueError(f"GPU count must be >= 0, got {declared}")
        return list(range(declared))
    out: list[int] = []
    for idx in declared:
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise ValueError(f"invalid GPU index {idx!r}")
        if idx in out:
            raise ValueError(f"GPU index {idx} declared twice")
        out.append(idx)
    return out
