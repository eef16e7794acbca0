"""The two middlewares: the error envelope around everything, and authentication + roles."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from rm_core.enums import Role
from rm_server import errors
from rm_server.api.common import (
    AGENT, HOST_KEY, OPERATOR_KEY, PUBLIC, TOKEN_HASH_KEY, reply, route_role, validation_details, validation_message,
)
from rm_server.keys import CONFIG, METRICS, STORE
from rm_server.security import hash_token
from rm_server.store import Conflict, DatabaseUnavailable, Invalid, NotFound, TokenRejected

log = logging.getLogger("rm_server.http")

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited",
}


def _name_fields(message: str, details: dict[str, Any]) -> dict[str, Any]:
    """A 400 names the bad field both ways, `field` and `fields[]`, whichever rule caught it."""
    details = dict(details)
    if "field" in details and "fields" not in details:
        details["fields"] = [{"field": details["field"], "message": message}]
    elif "field" not in details and details.get("fields"):
        details["field"] = details["fields"][0]["field"]
    return details


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    details = details or {}
    if status == 400:
        details = _name_fields(message, details)
    body = {"error": {"code": code, "message": message, "details": details}}
    resp = reply(body, status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = "Bearer"
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    # Requests, not sockets (an agent's or a console's WebSocket lives for hours).
    counted = request.headers.get("Upgrade", "").lower() != "websocket"
    metrics = request.app.get(METRICS)
    if counted and metrics is not None:
        metrics.in_flight += 1
    try:
        return await handler(request)
    except errors.HttpError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except NotFound as exc:
        return error_response(404, "not_found", str(exc), {"resource": exc.what, "id": exc.ident})
    except Conflict as exc:
        return error_response(409, "conflict", str(exc), exc.details)
    except Invalid as exc:
        return error_response(400, "invalid", str(exc), {"field": exc.field} if exc.field else {})
    except TokenRejected as exc:
        return error_response(401, "invalid_token", str(exc))
    except DatabaseUnavailable:
        log.warning("%s %s: the database cannot be reached", request.method, request.path)
        return error_response(503, "database_unavailable", "the database cannot be reached; try again shortly")
    except ValidationError as exc:
        return error_response(400, "invalid", validation_message(exc), validation_details(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
        if exc.status == 413:
            message = "request body too large"
        resp = error_response(exc.status, code, message)
        if isinstance(exc, web.HTTPMethodNotAllowed):
            # RFC 9110: a 405 names the methods the path does take, so a client can correct itself.
            allowed = sorted(exc.allowed_methods)
            resp = error_response(405, code, f"{request.method} is not allowed on {request.path}; "
                                             f"allowed: {', '.join(allowed)}", {"allowed": allowed})
            resp.headers["Allow"] = ", ".join(allowed)
        return resp
    except Exception:
        # Log the traceback for the admin; the client gets no internals.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error; see the server log")
    finally:
        if metrics is not None:
            metrics.observe_request(time.perf_counter() - started)
            if counted:
                metrics.in_flight -= 1


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and check the route's role before the handler parses anything."""
    match = request.match_info
    if match.http_exception is not None:
        raise match.http_exception
    needed = route_role(match.handler)
    if needed is None and not request.path.startswith("/api/"):
        needed = PUBLIC
    if needed == PUBLIC:
        return await handler(request)
    token = _bearer(request)
    if token is None:
        raise errors.Unauthorized("missing bearer token")
    token_hash = hash_token(token)
    store = request.app[STORE]
    if needed == AGENT:
        host_id = await store.hosts.host_for_agent_token(token_hash)
        if host_id is None:
            raise errors.Unauthorized("unknown or revoked agent token")
        request[HOST_KEY] = host_id
        return await handler(request)
    operator = await store.operators.session_operator(token_hash, request.app[CONFIG].clock())
    if operator is None:
        raise errors.Unauthorized("invalid or expired session; sign in again")
    # A route without a marker is treated as admin-only: forgetting a marker fails closed.
    role_needed = needed if isinstance(needed, Role) else Role.admin
    if not operator.role.allows(role_needed):
        raise errors.Forbidden(f"this needs the {role_needed.value} role; you are {operator.role.value}")
    request[OPERATOR_KEY] = operator
    request[TOKEN_HASH_KEY] = token_hash
    return await handler(request)
