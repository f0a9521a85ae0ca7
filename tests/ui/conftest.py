"""A real `jupyter lab` with the OpenXPU extension and its embedded engine on a temp data dir, driven
by Debian's chromium through Playwright. Skipped (with the reason) when chromium, Playwright or the
built labextension is missing; `.ci/run` installs all three, so there they run for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from jupyter_core.paths import jupyter_path
from servers import free_port
from uipage import wait_restored

TOKEN = "openxpu-ui-token"
HERE = Path(__file__).parent
CHROMIUM = os.environ.get("OPENXPU_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _labextension() -> Path | None:
    for d in jupyter_path("labextensions"):
        pkg = Path(d) / "openxpu" / "package.json"
        if pkg.exists() and (pkg.parent / "static").is_dir():
            return pkg.parent
    return None


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if _labextension() is None:
        return "the OpenXPU labextension is not built/installed (needs Node at `pip install -e .`; .ci/run builds it)"
    return None


def pytest_collection_modifyitems(config, items):
    ui = [item for item in items if "tests/ui/" in str(item.fspath).replace(os.sep, "/")]
    reason = _skip_reason() if ui else None
    if not reason:
        return
    if os.environ.get("CI"):  # .ci/run installs chromium and builds the panel: a skip there hides a bug
        raise pytest.UsageError(f"the UI tests cannot run in CI: {reason}")
    for item in ui:
        item.add_marker(pytest.mark.skip(reason=reason))


class Lab:
    """`jupyter lab` in a subprocess, the OpenXPU engine inside it, on a temp root, data and config dir."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/openxpu/api/v2"
        self.http = httpx.Client(headers={"Authorization": f"token {TOKEN}"}, timeout=10)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        root, data, config = self.tmp / "root", self.tmp / "openxpu", self.tmp / "config"
        for d in (root, data, config / "labconfig"):
            d.mkdir(parents=True, exist_ok=True)
        # No announcement toast and no update check: nothing reaches out, nothing covers the panel.
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "OPENXPU_DATA_DIR": str(data)}
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={self.port}",
            "--ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
            f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}", "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--OpenXPU.data_dir={data}", "--OpenXPU.poll_interval=0.1", "--OpenXPU.username=alice",
            "--OpenXPU.stop_grace_seconds=2", "--OpenXPU.borrow=False", f"--OpenXPU.layout_file={HERE / 'layout.yaml'}",
        ]
        self.log = self.tmp / "lab.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.http.get(self.api + "/info").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("jupyter lab did not start: " + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def submit(self, text: str) -> str:
        r = self.http.post(self.api + "/jobs", content=text, headers={"Content-Type": "text/yaml"})
        assert r.status_code == 202, r.text
        return r.json()["job"]

    def state(self, key: str) -> str:
        return self.http.get(f"{self.api}/jobs/{key}").json()["jobStatus"]["state"]

    def wait_state(self, key: str, states: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(key)
            if state in states:
                return state
            time.sleep(0.2)
        raise AssertionError(f"{key} did not reach {states}: {self.state(key)}")

    def wait_workspace_saved(self, current: str, timeout: float = 15) -> None:
        """Wait until Lab has saved its layout with `current` open in the left area (what a reload restores)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws = self.http.get(f"{self.url}/lab/api/workspaces/default").json()
            if ws.get("data", {}).get("layout-restorer:data", {}).get("left", {}).get("current") == current:
                return
            time.sleep(0.2)
        raise AssertionError(f"the workspace never saved {current} as the open left panel")

    def route_exists(self, path: str) -> bool:
        """False when the server answers the API's 404 NoApiError (a route another feature adds later)."""
        r = self.http.get(f"{self.api}/{path}")
        return not (r.status_code == 404 and r.json().get("code") == "NoApiError")


@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    """pytest-jupyter's per-test loop is not wanted here: Playwright's sync API runs its own, and the
    lab under test is a subprocess."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    """No in-process Jupyter server to clean up in the UI tests."""
    yield


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    server.start()
    yield server
    server.stop()


class Console:
    """Every console error and page error of the page; a test checks none came that it did not expect."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(f"{msg.text} @ {msg.location.get('url', '')}")

    def unexpected(self, allowed: list[str] = ()) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def session_page(browser, lab):
    """One Lab page for the whole session (loading Lab costs seconds); tests reset the panel's view."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    console = Console()
    page.on("console", console)
    page.on("pageerror", lambda e: console.errors.append(f"pageerror: {e}"))
    page.goto(f"{lab.url}/lab?token={TOKEN}")
    page.wait_for_selector("#jp-main-dock-panel", timeout=60000)
    page.wait_for_selector('.jp-SideBar [data-id="openxpu-panel"]', timeout=30000)
    wait_restored(page)
    yield page, console
    context.close()


@pytest.fixture
def page(session_page):
    page, console = session_page
    console.errors.clear()
    return page


@pytest.fixture
def console(session_page):
    return session_page[1]
