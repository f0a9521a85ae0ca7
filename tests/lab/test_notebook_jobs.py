"""Notebook -> job: `openxpu run notebook.ipynb -p x=3` on a user's notebook (tests/lab/data, written by
hand), its executed notebook as an output, and a failing cell as the job's exit diagnostics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from labdata import DATA
from servers import TOKEN

from openxpu_lab.client import OpenXPUApiError


def openxpu(*args: str, server, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENXPU_SERVER": server.url, "OPENXPU_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "openxpu_server.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def test_run_notebook_injects_the_parameter_and_succeeds(live_server, client, tmp_path):
    r = openxpu("run", str(DATA / "train_model.ipynb"), "-p", "x=3", server=live_server, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[worker-0] x is 3" in r.stdout and "[worker-0] result: 30" in r.stdout, r.stdout
    assert "SUCCEEDED" in r.stderr
    # The executed notebook is the job's output: fetch it with the CLI and look inside.
    r = openxpu("output", "alice~train_model", "-o", "got", server=live_server, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    executed = nbformat.read(tmp_path / "got" / "train_model" / "worker-0" / "train_model.ipynb", 4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    injected = executed.cells[tags.index(["injected-parameters"])]
    assert tags.index(["injected-parameters"]) == tags.index(["parameters"]) + 1
    assert "x = 3" in injected.source and "lr = 0.05" in injected.source
    outputs = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "x is 3" in outputs and "result: 30" in outputs
    assert executed.metadata["papermill"]["parameters"]["x"] == 3
    # The same through the client, and the run again gets a fresh name instead of a conflict.
    again = client.submit_notebook(DATA / "train_model.ipynb", parameters={"x": 4})
    assert again.key.startswith("alice~train_model-") and again.wait(120) == "SUCCEEDED"
    (item,) = again.outputs()
    assert b'"x = 4' in client.read_output(again.key, item) or b"x = 4" in client.read_output(again.key, item)


def test_two_instances_each_keep_their_executed_notebook(live_server, client, tmp_path):
    r = openxpu("submit", str(DATA / "train_model.ipynb"), "--instances", "2", "-p", "x=2", server=live_server,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    job = client.job(r.stdout.strip())
    assert job.wait(120) == "SUCCEEDED", job.exit_diagnostics
    files = job.download_outputs(tmp_path / "dl")
    assert sorted(p.relative_to(tmp_path / "dl").as_posix() for p in files) == [
        f"{job.name}/worker-0/train_model.ipynb", f"{job.name}/worker-1/train_model.ipynb"]


def test_a_failing_cell_fails_the_job_with_the_cell_error_in_the_diagnostics(live_server, client, tmp_path):
    r = openxpu("run", str(DATA / "broken_analysis.ipynb"), server=live_server, cwd=tmp_path)
    assert r.returncode == 1, r.stdout
    assert "KeyError: 'c'" in r.stderr and "In [" in r.stderr, r.stderr
    job = client.job("broken_analysis")
    assert job.state == "FAILED"
    diag = job.exit_diagnostics
    assert "caughtException: 'KeyError: ''c'''" in diag, diag
    assert "notebook cell In [" in diag and 'best = scores["c"]' in diag, diag
    # The partial executed notebook is kept too, with the error in the failing cell.
    (item,) = job.outputs()
    nb = nbformat.reads(client.read_output(job.key, item).decode(), 4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "KeyError"


def test_bad_notebook_options_fail_before_submission(live_server, tmp_path):
    before = len(live_server.http.get(live_server.base + "/jobs").json())
    r = openxpu("run", str(DATA / "train_model.ipynb"), "-p", "nosuch=1", server=live_server, cwd=tmp_path)
    assert r.returncode != 0 and "'nosuch' is not in the notebook's parameters cell" in r.stderr, r.stderr
    r = openxpu("run", str(DATA / "train_model.ipynb"), "--instances", "0", server=live_server, cwd=tmp_path)
    assert r.returncode == 2 and "--instances" in r.stderr, r.stderr
    yaml_job = tmp_path / "job.yaml"
    yaml_job.write_text("protocolVersion: 2\nname: y\ntype: job\n")
    r = openxpu("run", str(yaml_job), "--instances", "2", server=live_server, cwd=tmp_path)
    assert r.returncode != 0 and "applies to notebooks" in r.stderr, r.stderr
    assert len(live_server.http.get(live_server.base + "/jobs").json()) == before


def test_output_paths_cannot_leave_the_outputs_folder(client):
    job = client.job("train_model")
    (item,) = job.outputs()
    base = f"jobs/{job.key}/attempts/0/taskRoles/worker/taskIndex/0/attempts/0/outputs"
    for bad in ("..%2Fstdout", "a%2F..%2F..%2Fall", "%2Fetc%2Fpasswd", "sub%2F.%2Fx"):
        with pytest.raises(OpenXPUApiError) as e:
            client.request("GET", f"{base}/{bad}")
        assert e.value.status == 400 and e.value.code == "InvalidParametersError", e.value
        assert e.value.message.startswith("path:"), e.value
    # A literal ../ is resolved by the HTTP client before sending: it never reaches a file either.
    with pytest.raises(OpenXPUApiError) as e:
        client.request("GET", f"{base}/../stdout")
    assert e.value.status == 404
    with pytest.raises(OpenXPUApiError) as e:
        client.request("GET", f"{base}/missing.ipynb")
    assert e.value.status == 404 and e.value.code == "NoTaskError"
    with pytest.raises(OpenXPUApiError) as e:
        client.request("GET", f"jobs/{job.key}/outputs", params={"attempt": "x"})
    assert e.value.status == 400 and e.value.message.startswith("attempt:")
    assert client.read_output(job.key, item).startswith(b"{")
