"""What every OpenXPU REST handler shares: auth resource, identity and `{code, message}` errors."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..errors import InvalidParametersError, OpenXPUError
from ..services.jobs import JobService

AUTH_RESOURCE = "openxpu"
API = r"/openxpu/api/v2"
JOB = r"(?P<key>[^/~]+~[^/]+)"

log = logging.getLogger("openxpu.api")

_HTTP_CODES = {
    400: "InvalidParametersError",
    401: "UnauthorizedUserError",
    403: "ForbiddenUserError",
    404: "NoApiError",
    405: "NoApiError",
    409: "ConflictJobError",
    413: "InvalidParametersError",
}


@dataclass(frozen=True)
class Caller:
    """Who is making a request, as every service sees it: authorization decides on this alone."""

    username: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False


class OpenXPUHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, name: str = "openxpu", *args: Any, **kwargs: Any) -> None:
        super().initialize(name, *args, **kwargs)

    @property
    def jobs(self) -> JobService:
        return self.settings["openxpu_jobs"]

    @property
    def username(self) -> str:
        """The OpenXPU user: on a single-user server, the configured/OS login name."""
        return self.settings["openxpu"].username

    @property
    def caller(self) -> Caller:
        """The caller's identity. Single-user server: the lab's user, an admin in the default groups."""
        return Caller(self.username, frozenset({"default", "admingroup"}), admin=True)

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise InvalidParametersError(f"body: invalid JSON ({e})") from None
        if not isinstance(body, dict):
            raise InvalidParametersError("body: must be a JSON object")
        return body

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    # -- errors as {code, message} -------------------------------------------------------
    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, OpenXPUError):
            if self._finished:
                return
            log.info("%s %s -> %s %s", self.request.method, self.request.path, e.status, e.message)
            self.clear()
            self.set_status(e.status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(e.to_dict()))
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self._reason
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif exc is not None and status_code >= 500:
            message = "Internal error; see the server log."
        if status_code == 403 and self.current_user is None:
            status_code, message = 401, "Guest is not allowed to do this operation."
            self.set_status(401)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"code": _HTTP_CODES.get(status_code, "UnknownError"), "message": message}))
