"""A live `jupyter openxpu` server (real subprocess, real engine) shared by a test module, and helpers
to drive a real IPython kernel against it with jupyter_client."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from servers import TOKEN, Server

from openxpu_lab import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """`jupyter openxpu` acting for alice, with 8 CPUs and 2 (declared) GPUs."""
    d = tmp_path_factory.mktemp("openxpu-live")
    server = Server(d, f"sqlite:///{d / 'openxpu.sqlite'}", "--OpenXPU.gpus=2", "--OpenXPU.cpus=8",
                    "--OpenXPU.memory_mb=16384", "--OpenXPU.stop_grace_seconds=2")
    server.start()
    yield server
    stop_live_jobs(server)
    server.stop()


def stop_live_jobs(server: Server) -> None:
    jobs = server.http.get(server.base + "/jobs").json()
    live = [f"{j['username']}~{j['name']}" for j in jobs if j["state"] not in ("SUCCEEDED", "FAILED", "STOPPED")]
    for key in live:
        server.http.put(f"{server.base}/jobs/{key}/executionType", json={"value": "STOP"})
    deadline = time.monotonic() + 20
    while live and time.monotonic() < deadline:
        live = [k for k in live if server.state(k)["state"] not in ("SUCCEEDED", "FAILED", "STOPPED")]
        time.sleep(0.2)


@pytest.fixture
def client(live_server) -> Client:
    c = Client(live_server.url, TOKEN)
    yield c
    c.close()


class Kernel:
    """A real ipykernel started by jupyter_client, with OPENXPU_SERVER/TOKEN in its environment."""

    def __init__(self, server: Server, cwd: Path):
        from jupyter_client.manager import start_new_kernel

        env = {**os.environ, "OPENXPU_SERVER": server.url, "OPENXPU_TOKEN": TOKEN}
        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(cwd), startup_timeout=60)

    def run(self, code: str, timeout: float = 120) -> tuple[dict, list[dict]]:
        """Execute `code`; (reply content, [iopub output messages' content with their msg_type])."""
        outputs: list[dict] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        return reply["content"], outputs

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(live_server, tmp_path_factory):
    k = Kernel(live_server, tmp_path_factory.mktemp("kernel-cwd"))
    reply, out = k.run("%load_ext openxpu_lab")
    assert reply["status"] == "ok", out
    yield k
    k.stop()
