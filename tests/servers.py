"""A real `jupyter openxpu` server in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOKEN = "openxpu-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, db_url: str, *extra_args: str):
        self.data_dir, self.db_url, self.extra_args = data_dir, db_url, list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = f"http://127.0.0.1:{self.port}/openxpu/api/v2"
        self.http = httpx.Client(headers={"Authorization": f"token {TOKEN}"}, timeout=10)

    def start(self) -> None:
        cmd = [
            sys.executable, "-c", "from openxpu_server.app import main; main()", "--allow-root",
            f"--port={self.port}", "--ip=127.0.0.1", "--ServerApp.open_browser=False",
            f"--IdentityProvider.token={TOKEN}",
            f"--OpenXPU.data_dir={self.data_dir}", f"--OpenXPU.db_url={self.db_url}",
            "--OpenXPU.poll_interval=0.1", "--OpenXPU.username=alice", *self.extra_args,
        ]
        with open(self.data_dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.http.get(self.base + "/info").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not start: " + (self.data_dir / "server.log").read_text()[-3000:])

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def submit(self, text: str) -> str:
        r = self.http.post(self.base + "/jobs", content=text, headers={"Content-Type": "text/yaml"})
        assert r.status_code == 202, r.text
        return r.json()["job"]

    def state(self, key: str) -> dict:
        return self.http.get(f"{self.base}/jobs/{key}").json()["jobStatus"]
