"""REST: a job's output files (`jobs/{job}/outputs`) and their contents; thin over OutputService."""

from __future__ import annotations

from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import InvalidParametersError
from ..services.outputs import OutputService
from .base import API, JOB, OpenXPUHandler
from .handlers import TASK


class _OutputsBase(OpenXPUHandler):
    @property
    def outputs(self) -> OutputService:
        service = self.settings.get("openxpu_outputs")
        if service is None:
            service = self.settings["openxpu_outputs"] = OutputService(self.jobs)
        return service


class JobOutputsHandler(_OutputsBase):
    @web.authenticated
    @authorized
    def get(self, key: str) -> None:
        self.jobs.authorize(key, self.caller)
        raw = self.get_query_argument("attempt", None)
        attempt = None
        if raw is not None:
            try:
                attempt = int(raw)
            except ValueError:
                raise InvalidParametersError(f"attempt: must be an integer, got {raw!r}") from None
        files = self.outputs.list(key, attempt)
        base = f"{self.base_url.rstrip('/')}/openxpu/api/v2/jobs/{key}/attempts"
        for f in files:
            f["uri"] = (
                f"{base}/{f['jobAttemptId']}/taskRoles/{f['taskRoleName']}/taskIndex/{f['taskIndex']}"
                f"/attempts/{f['taskAttemptId']}/outputs/{quote(f['path'])}"
            )
        self.write_json({"files": files})


class TaskOutputHandler(_OutputsBase):
    @web.authenticated
    @authorized
    def get(self, key: str, attempt: str, role: str, index: str, task_attempt: str, path: str) -> None:
        self.jobs.authorize(key, self.caller)
        full = self.outputs.path(key, int(attempt), role, int(index), int(task_attempt), path)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(full.name)}")
        with open(full, "rb") as f:
            while chunk := f.read(1024 * 1024):
                self.write(chunk)
        self.finish()


handlers = [
    (rf"{API}/jobs/{JOB}/outputs", JobOutputsHandler),
    (rf"{API}/{TASK}/(?P<task_attempt>[0-9]+)/outputs/(?P<path>.+)", TaskOutputHandler),
]
