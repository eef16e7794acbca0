"""Errors a handler raises; the middleware turns each into the error envelope."""

from __future__ import annotations

from typing import Any


class HttpError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class BadRequest(HttpError):
    status, code = 400, "invalid"


class Unauthorized(HttpError):
    status, code = 401, "unauthorized"


class Forbidden(HttpError):
    status, code = 403, "forbidden"


class NotFoundError(HttpError):
    status, code = 404, "not_found"


class ConflictError(HttpError):
    status, code = 409, "conflict"


class TooManyRequests(HttpError):
    status, code = 429, "rate_limited"


class Unavailable(HttpError):
    status, code = 503, "unavailable"


class BadGateway(HttpError):
    """An agent answered, but with a failure of its own (restic failed, a bad reply)."""

    status, code = 502, "agent_failed"


class GatewayTimeout(HttpError):
    """An agent did not answer in time."""

    status, code = 504, "agent_timeout"
