"""Reuse the REST test server and the OpenAPI contract check of tests/api for the marketplace routes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("openxpu_api_conftest", Path(__file__).parents[1] / "api" / "conftest.py")
_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_api)

jp_server_config = _api.jp_server_config
openxpu_app = _api.openxpu_app
openapi_spec = _api.openapi_spec
contract = _api.contract
api = _api.api
