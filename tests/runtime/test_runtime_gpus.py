from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import types

import pytest

from openxpu_server.runtime import gpus as gpus_mod
from openxpu_server.runtime.env import gpu_environment
from openxpu_server.runtime.gpus import GpuInfo, detect_gpus, parse_nvidia_smi_csv, resolve_gpus

SAMPLE = """\
0, GPU-5c1e9a3e-1f0b-7d2a-9e44-0c6f1d2b3a41, NVIDIA H100 80GB HBM3, 81559
1, GPU-8d2f0b4c-2a1c-8e3b-0f55-1d7a2e3c4b52, NVIDIA H100 80GB HBM3, 81559
"""


def test_parse_canned_sample():
    assert parse_nvidia_smi_csv(SAMPLE) == [
        GpuInfo(0, "GPU-5c1e9a3e-1f0b-7d2a-9e44-0c6f1d2b3a41", "NVIDIA H100 80GB HBM3", 81559),
        GpuInfo(1, "GPU-8d2f0b4c-2a1c-8e3b-0f55-1d7a2e3c4b52", "NVIDIA H100 80GB HBM3", 81559),
    ]


def test_parse_tolerates_odd_lines():
    text = "\n".join(
        [
            "",
            "No devices were found",
            "0, GPU-aaa, Tesla T4, [N/A]",
            "x, GPU-bbb, Tesla T4, 15360",
            "1, GPU-ccc, Weird, Name, With Commas, 24576",
            "2, GPU-ddd, NVIDIA A10",  # too few fields
        ]
    )
    assert parse_nvidia_smi_csv(text) == [
        GpuInfo(0, "GPU-aaa", "Tesla T4", 0),
        GpuInfo(1, "GPU-ccc", "Weird, Name, With Commas", 24576),
    ]


def fake_nvidia_smi(tmp_path, monkeypatch, body: str):
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # "not installed"


def test_detect_with_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, f"cat <<'EOF'\n{SAMPLE}EOF")
    assert [g.index for g in detect_gpus()] == [0, 1]


def test_detect_failing_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    assert detect_gpus() == []


def test_detect_hanging_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "exec sleep 30")
    monkeypatch.setattr(gpus_mod, "NVIDIA_SMI_TIMEOUT_S", 0.5)
    assert detect_gpus() == []


def test_detect_without_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert detect_gpus() == []


def fake_pynvml(*, init_error: bool = False) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.shutdown_called = False

    def init():
        if init_error:
            raise RuntimeError("NVML Shared Library Not Found")

    def shutdown():
        m.shutdown_called = True

    m.nvmlInit = init
    m.nvmlShutdown = shutdown
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h}".encode()  # old bindings return bytes
    m.nvmlDeviceGetName = lambda h: "NVIDIA H200"
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=143771 * 1024 * 1024)
    return m


def test_detect_with_nvml(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    m = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", m)
    assert detect_gpus() == [
        GpuInfo(0, "GPU-0", "NVIDIA H200", 143771),
        GpuInfo(1, "GPU-1", "NVIDIA H200", 143771),
    ]
    assert m.shutdown_called


def test_nvml_failure_falls_back_to_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, f"cat <<'EOF'\n{SAMPLE}EOF")
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=True))
    assert len(detect_gpus()) == 2


def test_resolve_declared_wins(monkeypatch):
    monkeypatch.setattr(gpus_mod, "detect_gpus", lambda: [GpuInfo(0, "u", "n", 1)])
    assert resolve_gpus(4) == [0, 1, 2, 3]
    assert resolve_gpus(0) == []
    assert resolve_gpus([3, 1]) == [3, 1]
    assert resolve_gpus(None) == [0]


@pytest.mark.parametrize("bad", [-1, True, [0, 0], [-2], ["0"]])
def test_resolve_rejects_bad_declarations(bad):
    with pytest.raises(ValueError):
        resolve_gpus(bad)


# ---- real hardware (skipped on hosts without NVIDIA GPUs) -----------------------------------

HAVE_NVIDIA_SMI = shutil.which("nvidia-smi") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not HAVE_NVIDIA_SMI, reason="needs nvidia-smi")
def test_detect_real_gpus():
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    expected = [line for line in listed.splitlines() if line.startswith("GPU ")]
    found = detect_gpus()
    assert len(found) == len(expected)
    assert all(g.uuid.startswith(("GPU-", "MIG-")) and g.memory_mb > 0 for g in found)
    assert resolve_gpus(None) == [g.index for g in found]


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_NVIDIA_SMI and HAVE_TORCH), reason="needs a GPU and torch")
def test_task_sees_exactly_its_devices():
    devices = resolve_gpus(None)
    if not devices:
        pytest.skip("no GPU detected")
    probe = [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"]
    for requested, assigned in ((1, devices[-1:]), (0, devices)):
        env = {**os.environ, **gpu_environment(assigned, requested)}
        out = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.strip().splitlines()[-1]) == requested
