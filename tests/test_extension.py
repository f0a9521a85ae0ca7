"""The package as Jupyter sees it: auto-enabled server extension and the `jupyter openxpu` app."""

import subprocess
import sys


def test_server_extension_is_enabled_and_valid():
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_server.extension.serverextension", "list"],
        capture_output=True, text=True, timeout=60,
    )
    text = out.stdout + out.stderr
    line = next((ln for ln in text.splitlines() if "openxpu_server" in ln and "enabled" in ln), None)
    assert line is not None, text
    assert "openxpu_server 0." in text and "OK" in text


def test_jupyter_openxpu_help_lists_config():
    out = subprocess.run(
        [sys.executable, "-c", "from openxpu_server.app import main; main()", "--help-all"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for trait in ("--OpenXPU.db_url", "--OpenXPU.backend_class", "--OpenXPU.gpus", "--OpenXPU.stop_grace_seconds"):
        assert trait in out.stdout
