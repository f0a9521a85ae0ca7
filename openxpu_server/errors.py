"""Errors that cross layers and become `{code, message}` API responses.

The codes are OpenPAI's (reference openpai.md §2.1), so existing clients keep working.
"""

from __future__ import annotations


class OpenXPUError(Exception):
    """An error with an HTTP status and an OpenPAI error code."""

    status = 500
    code = "UnknownError"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class InvalidProtocolError(OpenXPUError):
    """A job protocol failed validation; `field` is the dotted path of the offending value."""

    status = 400
    code = "InvalidProtocolError"

    def __init__(self, field: str, rule: str):
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}" if field else rule)


class InvalidParametersError(OpenXPUError):
    status = 400
    code = "InvalidParametersError"


class NoApiError(OpenXPUError):
    status = 404
    code = "NoApiError"


class ConflictJobError(OpenXPUError):
    status = 409
    code = "ConflictJobError"


class NoJobError(OpenXPUError):
    status = 404
    code = "NoJobError"


class NoJobConfigError(OpenXPUError):
    status = 404
    code = "NoJobConfigError"


class NoTaskError(OpenXPUError):
    status = 404
    code = "NoTaskError"


class NoTaskLogError(OpenXPUError):
    status = 404
    code = "NoTaskLogError"


class NoTagError(OpenXPUError):
    status = 404
    code = "NoTagError"


class ForbiddenUserError(OpenXPUError):
    status = 403
    code = "ForbiddenUserError"


class NoVirtualClusterError(OpenXPUError):
    status = 404
    code = "NoVirtualClusterError"


class EngineLeaseError(OpenXPUError):
    """Another live engine already runs the loops for this store."""

    status = 503
    code = "UnknownError"
