"""The `openxpu` CLI as a user runs it: real subprocesses, the embedded engine or a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import TOKEN, Server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "jobs"


def openxpu(*args: str, data_dir: Path, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    # the caller's env wins; the ambient OPENXPU_SERVER/TOKEN of whoever runs the tests never leaks in
    full_env = {**os.environ, "OPENXPU_DATA_DIR": str(data_dir)}
    full_env.pop("OPENXPU_SERVER", None)
    full_env.pop("OPENXPU_TOKEN", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "from openxpu_server.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
    )


def write_job(path: Path, name: str, commands: list[str], instances: int = 1) -> Path:
    cmds = "".join(f"      - {c!r}\n" for c in commands)
    path.write_text(
        f"protocolVersion: 2\nname: {name}\ntype: job\n"
        "prerequisites: [{type: dockerimage, name: img, uri: python:3.11}]\n"
        f"taskRoles:\n  main:\n    instances: {instances}\n    dockerImage: img\n"
        "    resourcePerInstance: {cpu: 1, memoryMB: 64, gpu: 0}\n"
        f"    commands:\n{cmds}"
    )
    return path


def test_run_hello_distributed_streams_both_tasks_and_exits_zero(tmp_path: Path):
    r = openxpu("run", "--embedded", str(EXAMPLES / "hello-distributed.yaml"), data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[worker-0] worker-0 received: hello from worker-1" in r.stdout
    assert "[worker-1] worker-1 got reply: ack from worker-0" in r.stdout
    assert "is RUNNING" in r.stderr and "SUCCEEDED" in r.stderr
    # The same file again: `run` means run it now, so the used name gets a suffix.
    again = openxpu("run", "--embedded", str(EXAMPLES / "hello-distributed.yaml"), "-p", "greeting=bonjour",
                    data_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "exists already" in again.stderr
    assert "worker-0 received: bonjour" in again.stdout


def test_pytorch_ddp_example_trains_and_all_reduces(tmp_path: Path):
    pytest.importorskip("torch")
    r = openxpu("run", "--embedded", str(EXAMPLES / "pytorch-ddp-cpu.yaml"), "-p", "steps=3", data_dir=tmp_path,
                timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for rank in (0, 1):
        assert f"[worker-{rank}] rank {rank}/2 step 2 loss" in r.stdout
    # The all-reduced mean loss is the same on both ranks at every step.
    means = {
        line.split("] ", 1)[0]: line.rsplit("mean_loss ", 1)[1]
        for line in r.stdout.splitlines()
        if "step 2 loss" in line
    }
    assert len(set(means.values())) == 1, means


def test_failing_job_exits_nonzero_with_diagnostics(tmp_path: Path):
    f = write_job(tmp_path / "bad.yaml", "bad", ["echo before", "nosuchcommand_xyz --flag"])
    r = openxpu("run", "--embedded", str(f), data_dir=tmp_path)
    assert r.returncode == 1
    assert "[main-0] before" in r.stdout
    assert "FAILED" in r.stderr and "220" in r.stderr  # command not found, from the runtime analysis


def test_invalid_protocol_is_one_clear_line(tmp_path: Path):
    f = tmp_path / "invalid.yaml"
    f.write_text(
        "protocolVersion: 2\nname: x\ntype: job\nprerequisites: [{type: dockerimage, name: img, uri: a}]\n"
        "taskRoles:\n  worker:\n    dockerImage: img\n    resourcePerInstance: {cpu: 1, memoryMB: 64, gpu: -1}\n"
        "    commands: [echo]\n"
    )
    r = openxpu("run", "--embedded", str(f), data_dir=tmp_path)
    assert r.returncode != 0
    assert "taskRoles.worker.resourcePerInstance.gpu" in r.stderr
    assert "Traceback" not in r.stderr
    missing = openxpu("run", "--embedded", str(tmp_path / "nope.yaml"), data_dir=tmp_path)
    assert missing.returncode != 0 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_submit_list_show_logs_config_stop_embedded(tmp_path: Path):
    f = write_job(tmp_path / "j.yaml", "secretive", ["echo out-line", "echo err-line >&2"])
    text = f.read_text().replace("taskRoles:", "secrets: {token: s3cr3t}\ntaskRoles:")
    f.write_text(text)
    sub = openxpu("submit", "--embedded", str(f), data_dir=tmp_path)
    assert sub.returncode == 0, sub.stderr
    key = sub.stdout.strip()
    assert key.endswith("~secretive")
    follow = openxpu("logs", "--embedded", "-f", key, data_dir=tmp_path)  # runs the engine while following
    assert follow.returncode == 0, follow.stderr
    assert "[main-0] out-line" in follow.stdout and "[main-0] err-line" in follow.stdout
    only_err = openxpu("logs", "--embedded", key, "--name", "stderr", data_dir=tmp_path)
    assert "err-line" in only_err.stdout and "out-line" not in only_err.stdout
    listed = openxpu("list", "--embedded", data_dir=tmp_path)
    assert "SUCCEEDED" in listed.stdout
    shown = openxpu("show", "--embedded", key, data_dir=tmp_path)
    assert "SUCCEEDED" in shown.stdout and "main-0" in shown.stdout
    cfg = openxpu("config", "--embedded", key, data_dir=tmp_path)
    assert "******" in cfg.stdout and "s3cr3t" not in cfg.stdout
    gone = openxpu("show", "--embedded", "nobody~nothing", data_dir=tmp_path)
    assert gone.returncode != 0 and "NoJobError" in gone.stderr


def test_cli_against_a_running_server(tmp_path: Path):
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'server.sqlite'}")
    server.start()
    try:
        env = {"OPENXPU_SERVER": server.url, "OPENXPU_TOKEN": TOKEN}
        sleeper = write_job(tmp_path / "s.yaml", "sleeper", ["echo started", "sleep 600"])
        r = openxpu("run", str(EXAMPLES / "hello-distributed.yaml"), data_dir=tmp_path / "cli", env=env)
        assert r.returncode == 0, r.stderr
        assert f"to {server.url}" in r.stderr
        assert "[worker-1] worker-1 got reply" in r.stdout
        sub = openxpu("submit", str(sleeper), data_dir=tmp_path / "cli", env=env)
        key = sub.stdout.strip()
        assert key == "alice~sleeper", sub.stderr
        stop = openxpu("stop", key, data_dir=tmp_path / "cli", env=env)
        assert stop.returncode == 0, stop.stderr
        follow = openxpu("logs", "-f", key, data_dir=tmp_path / "cli", env=env)
        assert follow.returncode == 2 and "STOPPED" in follow.stderr  # 2: the job was stopped
        bad = openxpu("list", "--server", server.url, "--token", "wrong", data_dir=tmp_path / "cli")
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
    finally:
        server.stop()
