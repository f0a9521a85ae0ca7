"""REST v2 jobs API (OpenPAI paths under `{base_url}openxpu/api/v2/`); thin handlers over JobService.

Every verb is `@web.authenticated` (jupyter-server identity) then `@authorized` (resource "openxpu");
the base handler applies the authorization table (services/authz.py) and every job route asks
`JobService.authorize` whether this caller may see (404 otherwise) or change (403) that job.
The routes here and `openapi.yaml` are kept equal by a test.
"""

from __future__ import annotations

import asyncio
import os

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

from .. import __version__
from ..errors import InvalidParametersError, NoApiError, NoTaskLogError
from ..services.jobs import LOG_NAMES, parse_list_query
from .base import API, JOB, OpenXPUHandler

TAIL_BYTES = 16 * 1024
TASK = r"jobs/" + JOB + r"/attempts/(?P<attempt>[0-9]+)/taskRoles/(?P<role>[^/]+)/taskIndex/(?P<index>[0-9]+)/attempts"


class InfoHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(
            {
                "name": "PAI RESTful API",
                "version": __version__,
                "launcherType": "openxpu",
                "authnMethod": "jupyter",
                "server": "OpenXPU",
                "user": self.caller.username,
            }
        )


class JobsHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        args = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        self.write_json(self.jobs.list(parse_list_query(args), visible=self.jobs.visible_users(self.caller)))

    @web.authenticated
    @authorized
    def post(self) -> None:
        caller = self.caller
        key = self.jobs.submit(caller.username, self.request.body, caller=caller)
        self.write_json({"status": 202, "message": f"Update job {key.split('~', 1)[1]} for user {caller.username} successfully.", "job": key}, 202)


class JobHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self, key: str) -> None:
        self.jobs.authorize(key, self.caller)
        self.write_json(self.jobs.detail(key))


class JobAttemptHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self, key: str, attempt: str) -> None:
        self.jobs.authorize(key, self.caller)
        self.write_json(self.jobs.detail(key, int(attempt)))


class JobConfigHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self, key: str) -> None:
        self.jobs.authorize(key, self.caller)
        text = self.jobs.config(key)
        self.finish(text, set_content_type="text/yaml; charset=utf-8")


class ExecutionTypeHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def put(self, key: str) -> None:
        self.jobs.authorize(key, self.caller, change=True)
        body = self.json_body()
        if "value" not in body:
            raise InvalidParametersError("value: required (START or STOP)")
        self.jobs.set_execution_type(key, body["value"])
        self.write_json({"status": 202, "message": f"Execute job {key} successfully."}, 202)


class TagHandler(OpenXPUHandler):
    def _tag(self) -> str:
        body = self.json_body()
        if not isinstance(body.get("value"), str):
            raise InvalidParametersError("value: required, a tag string")
        return body["value"]

    @web.authenticated
    @authorized
    def put(self, key: str) -> None:
        self.jobs.authorize(key, self.caller, change=True)
        tag = self._tag()
        self.jobs.add_tag(key, tag)
        self.write_json({"status": 200, "message": f"Add tag {tag} for job {key} successfully."})

    @web.authenticated
    @authorized
    def delete(self, key: str) -> None:
        self.jobs.authorize(key, self.caller, change=True)
        tag = self._tag()
        self.jobs.remove_tag(key, tag)
        self.write_json({"status": 200, "message": f"Delete tag {tag} from job {key} successfully."})


class EventsHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self, key: str) -> None:
        self.jobs.authorize(key, self.caller)
        self.write_json(self.jobs.events(key, self.get_query_argument("type", None)))


class TaskAttemptsHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self, key: str, attempt: str, role: str, index: str) -> None:
        self.jobs.authorize(key, self.caller)
        self.write_json(self.jobs.task_attempts(key, int(attempt), role, int(index)))


class TaskLogsHandler(OpenXPUHandler):
    """`{locations: [{name, uri}]}` like OpenPAI's log-manager indirection; the URIs are ours."""

    @web.authenticated
    @authorized
    def get(self, key: str, attempt: str, role: str, index: str, task_attempt: str) -> None:
        self.jobs.authorize(key, self.caller)
        # Raises NoTaskLogError when the task attempt does not exist.
        self.jobs.log_path(key, int(attempt), role, int(index), int(task_attempt), "all")
        base = f"{self.base_url.rstrip('/')}/openxpu/api/v2/jobs/{key}/attempts/{attempt}/taskRoles/{role}/taskIndex/{index}/attempts/{task_attempt}/logs"
        tail = self.get_query_argument("tail-mode", "false") == "true"
        suffix = "?tail-mode=true" if tail else ""
        self.write_json({"locations": [{"name": n, "uri": f"{base}/{n}{suffix}"} for n in LOG_NAMES]})


class TaskLogContentHandler(OpenXPUHandler):
    """A log's text: whole, its tail (`tail-mode=true`), from a byte `offset`, or followed live
    (`follow=true`: streamed until the task ends). `X-OpenXPU-Log-Offset` says where to resume."""

    @web.authenticated
    @authorized
    async def get(self, key: str, attempt: str, role: str, index: str, task_attempt: str, name: str) -> None:
        self.jobs.authorize(key, self.caller)
        path = self.jobs.log_path(key, int(attempt), role, int(index), int(task_attempt), name)
        size = path.stat().st_size
        offset_arg = self.get_query_argument("offset", None)
        if offset_arg is not None:
            try:
                offset = int(offset_arg)
            except ValueError:
                raise InvalidParametersError(f"offset: must be an integer, got {offset_arg!r}") from None
            if offset < 0:
                raise InvalidParametersError("offset: must be >= 0")
        elif self.get_query_argument("tail-mode", "false") == "true":
            offset = max(0, size - TAIL_BYTES)
        else:
            offset = 0
        if offset > size:  # the file was rotated under the follower: start again
            offset = 0
        follow = self.get_query_argument("follow", "false") == "true"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if not follow:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            self.set_header("X-OpenXPU-Log-Offset", str(offset + len(data)))
            self.finish(data, set_content_type="text/plain; charset=utf-8")
            return
        await self._follow(key, path, offset)

    async def _follow(self, key: str, path: os.PathLike, offset: int) -> None:
        idle_after_end = 0
        try:
            while True:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read(1024 * 1024)
                if data:
                    offset += len(data)
                    self.write(data)
                    await self.flush()
                    continue
                state, _, _ = self.jobs.job_state(key)
                if state in ("SUCCEEDED", "FAILED", "STOPPED"):
                    idle_after_end += 1
                    if idle_after_end > 2:
                        break
                await asyncio.sleep(0.25)
        except StreamClosedError:
            return
        self.finish(set_content_type="text/plain; charset=utf-8")


class NotFoundHandler(OpenXPUHandler):
    """Unknown paths under the API answer 404 NoApiError, as OpenPAI does."""

    openxpu_authz = False  # no row in the authorization table: any authenticated caller gets the 404

    def _missing(self, *args: str) -> None:
        raise NoApiError(f"{self.request.method} {self.request.path} is not an OpenXPU API route.")

    @web.authenticated
    @authorized
    def get(self, *args: str) -> None:
        self._missing()

    @web.authenticated
    @authorized
    def post(self, *args: str) -> None:
        self._missing()

    @web.authenticated
    @authorized
    def put(self, *args: str) -> None:
        self._missing()

    @web.authenticated
    @authorized
    def delete(self, *args: str) -> None:
        self._missing()


default_handlers = [
    (rf"{API}/?", InfoHandler),
    (rf"{API}/info", InfoHandler),
    (rf"{API}/jobs", JobsHandler),
    (rf"{API}/jobs/{JOB}", JobHandler),
    (rf"{API}/jobs/{JOB}/attempts/(?P<attempt>[0-9]+)", JobAttemptHandler),
    (rf"{API}/jobs/{JOB}/config", JobConfigHandler),
    (rf"{API}/jobs/{JOB}/executionType", ExecutionTypeHandler),
    (rf"{API}/jobs/{JOB}/tag", TagHandler),
    (rf"{API}/jobs/{JOB}/events", EventsHandler),
    (rf"{API}/{TASK}", TaskAttemptsHandler),
    (rf"{API}/{TASK}/(?P<task_attempt>[0-9]+)/logs", TaskLogsHandler),
    (rf"{API}/{TASK}/(?P<task_attempt>[0-9]+)/logs/(?P<name>[a-z]+)", TaskLogContentHandler),
]

# Last of all routes: any other path under the API is a JSON 404, not Jupyter's HTML page.
not_found_handlers = [(r"/openxpu/api/(.*)", NotFoundHandler)]

__all__ = ["default_handlers", "not_found_handlers", "NoTaskLogError"]
