"""What every OpenXPU REST handler shares: identity, the authorization table, limits and
`{code, message}` errors.

Identity. The jupyter-server identity is the OpenXPU identity: a single-user lab's user is
`c.OpenXPU.username` (an admin unless `c.OpenXPU.lab_user_is_admin = False`); under JupyterHub the
hub user's name and groups (`User.hub_user`) become an OpenXPU user and groups on its first request.
Clients outside Jupyter use OpenXPU tokens: `Authorization: Bearer <t>`, `Basic base64(user:apptoken)`
(OpenPAI), or `token <t>` / `?token=<t>` (what the CLI sends). Those are checked here, in `prepare`,
before jupyter-server's own authentication: a valid one sets `_jupyter_current_user`, which every
jupyter-server IdentityProvider honours as "already authenticated" (`IdentityProvider._get_user`).
Doing it in the handler rather than in a replacement IdentityProvider keeps whatever provider the
deployment uses (token, password, JupyterHub) and scopes OpenXPU tokens to the OpenXPU API: they
never open kernels, terminals or files of the Jupyter server.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from typing import Any

from jupyter_server.auth.identity import User
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..errors import InvalidParametersError, OpenXPUError
from ..services import authz
from ..services.authz import Caller, Level
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
    429: "TooManyRequestsError",
}

INVALID_TOKEN = "Your token is invalid (unknown, expired or revoked)."

__all__ = ["API", "AUTH_RESOURCE", "JOB", "Caller", "OpenXPUHandler"]


class RateLimiter:
    """Requests per minute per user (a token bucket each); 0 turns it off."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True


class OpenXPUHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, name: str = "openxpu", *args: Any, **kwargs: Any) -> None:
        super().initialize(name, *args, **kwargs)

    @property
    def jobs(self) -> JobService:
        return self.settings["openxpu_jobs"]

    # allow_unauthenticated=False routes need a credential; `PUBLIC` rows of the table do not.
    openxpu_authz = True  # False only for the catch-all 404 (unknown paths have no row)

    @property
    def app(self):
        return self.settings["openxpu"]

    @property
    def accounts(self):
        return self.settings["openxpu_accounts"]

    @property
    def username(self) -> str:
        return self.caller.username

    # -- identity ------------------------------------------------------------------------
    def _openxpu_credential(self) -> Caller | None:
        """An OpenXPU token in the request (Bearer, Basic user:apptoken, `token oxp_...`), verified."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        token = self.get_query_argument("token", "")
        try:
            if scheme == "bearer" and value:
                self._openxpu_presented = True
                return self.accounts.verify_token(value)
            if scheme == "basic" and value:
                self._openxpu_presented = True
                user, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
                return self.accounts.verify_basic(user, secret)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if scheme == "token" and value.startswith("oxp_"):
            token = value
        if token.startswith("oxp_"):
            self._openxpu_presented = True
            return self.accounts.verify_token(token)
        return None

    _openxpu_presented = False

    def _caller_from_jupyter(self, user: Any) -> Caller:
        hub = getattr(user, "hub_user", None)
        if isinstance(hub, dict) and hub.get("name"):
            groups = ["default", *[g for g in hub.get("groups") or [] if isinstance(g, str)]]
            if hub.get("admin"):
                groups.append("admingroup")
            self.accounts.ensure_user(hub["name"], groups, origin="hub")
            return self.accounts.caller(hub["name"])
        return self.accounts.caller(self.app.username)

    @property
    def caller(self) -> Caller:
        """The caller's identity, that every service authorizes on."""
        caller = getattr(self, "_openxpu_caller", None)
        if caller is None:
            if self.current_user is None:
                raise authz.UnauthorizedUserError(
                    INVALID_TOKEN if self._openxpu_presented else "Guest is not allowed to do this operation."
                )
            caller = self._openxpu_caller = self._caller_from_jupyter(self.current_user)
        return caller

    async def prepare(self) -> None:  # type: ignore[override]
        self._openxpu_caller: Caller | None = None
        self._openxpu_presented = False
        token_caller = self._openxpu_credential()
        if token_caller is not None:
            self._openxpu_caller = token_caller
            # jupyter-server's IdentityProvider treats a set _jupyter_current_user as authenticated.
            self._jupyter_current_user = User(username=token_caller.username)
            self._token_authenticated = True  # a header credential: no XSRF cookie, no origin check
        await super().prepare()
        if self._finished or not self.openxpu_authz:
            return
        method = self.request.method.lower()
        if getattr(type(self), method, None) is getattr(web.RequestHandler, method, None):
            return  # not implemented here: tornado answers 405
        path = "/" + self.request.path[len(self.base_url):].lstrip("/") if self.base_url != "/" else self.request.path
        level = authz.level_of(self.request.method, path)
        if level is None:
            log.error("no authorization rule for %s %s: denied", self.request.method, path)
            raise OpenXPUError(f"{self.request.method} {path}: no authorization rule", code="ForbiddenUserError",
                               status=403)
        self.openxpu_level = level
        self._check_size(path)
        if level is Level.PUBLIC and self.current_user is None:
            return
        caller = self.caller
        if not self.settings["openxpu_rate_limiter"].allow(caller.username):
            raise OpenXPUError(
                f"rate limit: at most {self.app.rate_limit_per_minute} requests per minute per user",
                code="TooManyRequestsError", status=429)
        authz.require(level, caller, path_user=self.path_kwargs.get("username"))

    def _check_size(self, path: str) -> None:
        limit = self.app.max_upload_bytes if path.endswith("/files") else self.app.max_request_bytes
        size = len(self.request.body or b"")
        if size > limit:
            raise OpenXPUError(f"body: {size} bytes is larger than this server's limit of {limit} bytes",
                               code="InvalidParametersError", status=413)

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
            if getattr(self, "_openxpu_presented", False):
                message = INVALID_TOKEN
            self.set_status(401)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"code": _HTTP_CODES.get(status_code, "UnknownError"), "message": message}))
