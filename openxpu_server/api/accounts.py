"""Authentication, tokens, users and groups (OpenPAI REST v2 paths); thin handlers over AccountService.

Who may call what is the authorization table's (services/authz.py), applied in the base handler.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from tornado import web

from ..errors import ForbiddenUserError, InvalidParametersError
from .base import API, OpenXPUHandler

NAME = r"(?P<{}>[^/]+)"


class LoginHandler(OpenXPUHandler):
    """Password login for clients outside Jupyter: a bearer token (default 7 days)."""

    def check_xsrf_cookie(self) -> None:
        """No XSRF check: the answer is a token for the sender, no cookie is set, nothing else changes."""

    @allow_unauthenticated
    def post(self) -> None:
        if not self.app.password_login:
            raise ForbiddenUserError("password login is disabled on this server (c.OpenXPU.password_login)")
        ctype = self.request.headers.get("Content-Type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            body: dict = {k: self.get_body_argument(k) for k in self.request.body_arguments}
            if "expiration" in body:
                try:
                    body["expiration"] = int(body["expiration"])
                except ValueError:
                    raise InvalidParametersError("expiration: seconds, an integer") from None
        else:
            body = self.json_body()
        issued, caller = self.accounts.login(body.get("username"), body.get("password"),
                                             expiration=body.get("expiration"))
        self.write_json({"token": issued.token, "tokenId": issued.token_id, "user": caller.username,
                         "admin": caller.admin, "hasGitHubPAT": False, "expiresTime": issued.expires_time})


class LogoutHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def delete(self) -> None:
        caller = self.caller
        if caller.token_id is None:
            raise InvalidParametersError("Authorization: log out needs the OpenXPU token to revoke (Bearer ...)")
        self.accounts.revoke(caller, caller.token_id)
        self.write_json({"status": 200, "message": "Logged out: the token is revoked."})


class TokensHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json({"tokens": self.accounts.list_tokens(self.caller)})

    @web.authenticated
    @authorized
    def post(self) -> None:
        body = self.json_body()
        issued = self.accounts.issue(self.caller.username, expiration=body.get("expiration"),
                                     description=body.get("description", ""))
        self.write_json({"token": issued.token, "tokenId": issued.token_id, "application": False,
                         "expiresTime": issued.expires_time}, 201)


class ApplicationTokenHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def post(self) -> None:
        body = self.json_body()
        issued = self.accounts.issue(self.caller.username, application=True, description=body.get("description", ""))
        self.write_json({"token": issued.token, "tokenId": issued.token_id, "application": True,
                         "expiresTime": None}, 201)


class TokenCheckHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        c = self.caller
        self.write_json({"username": c.username, "admin": c.admin, "application": c.application,
                         "groups": sorted(c.groups), "tokenId": c.token_id})


class TokenHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def delete(self, token: str) -> None:
        self.accounts.revoke(self.caller, token)
        self.write_json({"status": 200, "message": "Token revoked."})


class UsersHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(self.accounts.list_users())

    @web.authenticated
    @authorized
    def post(self) -> None:
        self.write_json(self.accounts.create_user(self.json_body()), 201)


class UserHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self, username: str) -> None:
        self.write_json(self.accounts.get_user(username))

    @web.authenticated
    @authorized
    def put(self, username: str) -> None:
        self.write_json(self.accounts.update_user(self.caller, username, self.json_body()))

    @web.authenticated
    @authorized
    def delete(self, username: str) -> None:
        self.accounts.delete_user(self.caller, username)
        self.write_json({"status": 200, "message": f"User {username} is removed."})


class GroupsHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(self.accounts.list_groups())

    @web.authenticated
    @authorized
    def post(self) -> None:
        self.write_json(self.accounts.create_group(self.json_body()), 201)


class GroupHandler(OpenXPUHandler):
    @web.authenticated
    @authorized
    def get(self, groupname: str) -> None:
        self.write_json(self.accounts.get_group(groupname))

    @web.authenticated
    @authorized
    def put(self, groupname: str) -> None:
        self.write_json(self.accounts.update_group(groupname, self.json_body()))

    @web.authenticated
    @authorized
    def delete(self, groupname: str) -> None:
        self.accounts.delete_group(groupname)
        self.write_json({"status": 200, "message": f"Group {groupname} is removed."})


handlers = [
    (rf"{API}/authn/basic/login", LoginHandler),
    (rf"{API}/authn/basic/logout", LogoutHandler),
    (rf"{API}/tokens", TokensHandler),
    (rf"{API}/tokens/application", ApplicationTokenHandler),
    (rf"{API}/tokens/check", TokenCheckHandler),
    (rf"{API}/tokens/{NAME.format('token')}", TokenHandler),
    (rf"{API}/users", UsersHandler),
    (rf"{API}/users/{NAME.format('username')}", UserHandler),
    (rf"{API}/groups", GroupsHandler),
    (rf"{API}/groups/{NAME.format('groupname')}", GroupHandler),
]
