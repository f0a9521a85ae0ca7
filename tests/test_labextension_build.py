"""The build hook that decides what happens to the JupyterLab panel when Node.js is missing."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class Warnings:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def display_warning(self, message: str) -> None:
        self.messages.append(message)


def make_hook(root: Path, app: Warnings):
    spec = importlib.util.spec_from_file_location("openxpu_hatch_build", ROOT / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.NodeCheckHook(str(root), {}, None, None, str(root / "dist"), "wheel", app)


@pytest.fixture
def no_node(monkeypatch):
    monkeypatch.delenv("SKIP_JUPYTER_BUILDER", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None if name == "node" else "/usr/bin/" + name)


def test_editable_install_without_node_skips_the_panel_and_says_why(tmp_path, no_node):
    app = Warnings()
    _, hook = make_hook(tmp_path, app)
    hook.initialize("editable", {})
    assert os.environ["SKIP_JUPYTER_BUILDER"] == "1"  # hatch-jupyter-builder then builds nothing
    assert len(app.messages) == 1 and "Node.js" in app.messages[0] and "not built" in app.messages[0]


def test_wheel_without_node_and_without_a_built_panel_fails_clearly(tmp_path, no_node):
    _, hook = make_hook(tmp_path, Warnings())
    with pytest.raises(RuntimeError, match="Node.js .* not found"):
        hook.initialize("standard", {})
    assert "SKIP_JUPYTER_BUILDER" not in os.environ


def test_a_prebuilt_panel_ships_without_node(tmp_path, no_node):
    module, hook = make_hook(tmp_path, Warnings())
    (tmp_path / module.BUILT).parent.mkdir(parents=True)
    (tmp_path / module.BUILT).write_text("")
    hook.initialize("standard", {})
    assert os.environ["SKIP_JUPYTER_BUILDER"] == "1"


def test_with_node_the_builder_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("SKIP_JUPYTER_BUILDER", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    _, hook = make_hook(tmp_path, Warnings())
    hook.initialize("editable", {})
    assert "SKIP_JUPYTER_BUILDER" not in os.environ


def test_package_json_pins_the_builder_and_the_lockfile_is_there():
    import json

    pkg = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert pkg["jupyterlab"]["outputDir"] == "../openxpu_server/labextension"
    for name, version in pkg["devDependencies"].items():
        assert version[0].isdigit(), f"{name} is not pinned: {version}"
    assert (ROOT / "labextension" / "yarn.lock").exists()
