"""`schemathesis` against the OpenAPI document on a live `jupyter openxpu`: no answer is a 5xx.

Bounded (a few examples per operation, a fixed seed, deterministic generation) so it takes about a
minute. `POST storages` is left out: it creates directories anywhere on the host by design (an
admin's trusted input), which a fuzzer running as the admin must not do to the test machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from servers import TOKEN, Server

import openxpu_server

SPEC = Path(openxpu_server.__file__).parent / "api" / "openapi.yaml"
LAYOUT = Path(__file__).resolve().parents[1] / "api" / "layout.yaml"


@pytest.mark.timeout(300)
def test_no_server_errors_under_schemathesis(tmp_path):
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}", f"--OpenXPU.layout_file={LAYOUT}",
                    f"--OpenXPU.storage_root={tmp_path / 'storages'}")
    server.start()
    try:
        cmd = [
            exe, "run", str(SPEC), "--url", server.url,
            "--checks", "not_a_server_error",
            "--max-examples", "4", "--seed", "20261204", "--generation-deterministic", "--no-shrink",
            "--exclude-operation-id", "createStorage",
            "--request-timeout", "10", "--warnings", "off",
            "-H", f"Authorization: token {TOKEN}",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    finally:
        server.stop()
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, f"exit {out.returncode}\n{report}"
    assert " passed" in out.stdout and "Server error" not in out.stdout, report
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-4000:]
