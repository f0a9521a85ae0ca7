"""Build hook run before hatch-jupyter-builder: the JupyterLab panel needs Node to build.

Without `node` on PATH an editable install skips the panel's build and says so (the server extension,
CLI and Python tests do not need it); a wheel needs the panel, so it fails with the same explanation
unless a prebuilt one is there (an sdist ships it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUILT = Path("openxpu_server") / "labextension" / "static" / "style.js"
MESSAGE = (
    "openxpu: Node.js (node) was not found, so the JupyterLab panel (labextension/) is not built. "
    "The server extension, the CLI and the REST API work without it. To get the panel, install "
    "Node.js >= 18 and run `pip install -e .` again (or `cd labextension && jlpm install && jlpm build`)."
)


class NodeCheckHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or shutil.which("node") or os.environ.get("SKIP_JUPYTER_BUILDER"):
            return
        if (Path(self.root) / BUILT).exists():
            os.environ["SKIP_JUPYTER_BUILDER"] = "1"  # a prebuilt panel is there: ship it as it is
            return
        if version == "editable":
            self.app.display_warning(MESSAGE)
            os.environ["SKIP_JUPYTER_BUILDER"] = "1"
            return
        raise RuntimeError(MESSAGE)
