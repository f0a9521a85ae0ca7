"""REST: a notebook under the server's root as a protocol v2 job (`POST convert/notebook`).

The lab panel's "Submit this notebook" and "Run as OpenXPU job" send the notebook's path; the job
comes back as YAML for the submit form, so the user sees and may edit it before submitting. The
conversion itself is `openxpu_lab.convert` (the same code the CLI and the magics use).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import InvalidParametersError
from ..services.storage import NoFileError
from .base import API, OpenXPUHandler

# body field -> notebook_to_job keyword; each an integer >= 0 except the strings
_INT_OPTIONS = {"instances": "instances", "gpu": "gpu", "cpu": "cpu", "memoryMB": "memory_mb"}
_STR_OPTIONS = {"name": "name", "virtualCluster": "vc", "priority": "priority"}


class ConvertNotebookHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def post(self) -> None:
        from openxpu_lab.convert import ConversionError, notebook_to_job, to_yaml

        body = self.json_body()
        path = self._notebook_path(body.get("path"))
        params = body.get("parameters", {})
        if not isinstance(params, dict):
            raise InvalidParametersError("parameters: must be an object of name -> value")
        options: dict[str, Any] = {}
        for field, kw in _INT_OPTIONS.items():
            value = body.get(field)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise InvalidParametersError(f"{field}: must be an integer >= 0, got {value!r}")
                options[kw] = value
        for field, kw in _STR_OPTIONS.items():
            value = body.get(field)
            if value is not None:
                if not isinstance(value, str) or not value:
                    raise InvalidParametersError(f"{field}: must be a non-empty string")
                options[kw] = value
        try:
            job = notebook_to_job(path, parameters=params, **options)
        except ConversionError as e:
            raise InvalidParametersError(f"notebook: {e}") from None
        self.write_json({"protocol": to_yaml(job), "path": body["path"]})

    def _notebook_path(self, raw: Any) -> Path:
        """`raw` (a path relative to the server's root, as Lab names files) inside that root."""
        if not isinstance(raw, str) or not raw.strip():
            raise InvalidParametersError("path: required, the notebook's path relative to the server's root")
        if not raw.endswith(".ipynb"):
            raise InvalidParametersError(f"path: must name a .ipynb notebook, got {raw!r}")
        root = Path(self.settings.get("server_root_dir") or os.getcwd()).expanduser().resolve()
        full = (root / raw.lstrip("/")).resolve()
        if full != root and root not in full.parents:
            raise InvalidParametersError(f"path: {raw!r} is outside the server's root")
        if not full.is_file():
            raise NoFileError(f"path: no notebook {raw!r} under the server's root")
        return full


handlers = [(rf"{API}/convert/notebook", ConvertNotebookHandler)]
