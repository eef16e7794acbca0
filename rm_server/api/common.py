"""What every REST handler uses: role markers, body parsing, query parsing, JSON replies."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json, to_json

from rm_core.api import Operator
from rm_core.enums import Role
from rm_server.errors import BadRequest
from rm_server.store import Actor

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=Enum)
T = TypeVar("T")
Handler = Callable[[web.Request], Any]

ROLE_ATTR = "__rm_role__"
PUBLIC = "public"
AGENT = "agent"

OPERATOR_KEY = web.RequestKey("operator", Operator)
HOST_KEY = web.RequestKey("host_id", str)
TOKEN_HASH_KEY = web.RequestKey("token_hash", str)


def requires(role: Role | str) -> Callable[[Handler], Handler]:
    """Mark the least role a route needs; the auth middleware enforces it before the handler runs."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, ROLE_ATTR, role)
        return handler

    return mark


def route_role(handler: Any) -> Role | str | None:
    return getattr(handler, ROLE_ATTR, None)


def validation_details(exc: ValidationError) -> dict[str, Any]:
    fields = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        fields.append({"field": loc, "message": err["msg"]})
    return {"fields": fields}


def validation_message(exc: ValidationError) -> str:
    parts = [f"{f['field']}: {f['message']}" for f in validation_details(exc)["fields"]]
    return "invalid request: " + "; ".join(parts[:5])


def _integral(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer (the OpenAPI document's `integer`); strict
    validation would not: such numbers become ints first."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The body as `model`, validated strictly: a JSON type the document does not name is an
    error (0 is not false, "3600" is not a number), as the document says."""
    raw = await request.read()
    if not raw.strip():
        raw = b"{}"
    try:
        value = _integral(from_json(raw, allow_inf_nan=False))
    except ValueError:
        raise BadRequest("request body is not valid JSON", code="malformed_json") from None
    try:
        return model.model_validate_json(to_json(value), strict=True)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc), validation_details(exc)) from None


def path_param(request: web.Request, name: str, adapter: TypeAdapter[T]) -> T:
    """A path parameter checked by its rm_core type (the same adapter `@documented(path=...)`
    states in the reference); a 400 names the parameter."""
    try:
        return adapter.validate_python(request.match_info[name])
    except ValidationError as exc:
        raise BadRequest(f"path parameter {name!r}: {exc.errors()[0]['msg']}", {"field": name}) from None


def websocket_or_400(request: web.Request, ws: web.WebSocketResponse) -> web.WebSocketResponse:
    """A plain HTTP request to a WebSocket route: a 400 that says what to do, in the envelope."""
    if not ws.can_prepare(request).ok:
        raise BadRequest("this route is a WebSocket: connect with an `Upgrade: websocket` handshake",
                         code="websocket_required")
    return ws


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)  # "" is not a number either
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer", {"field": name}) from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name!r} must be between {lo} and {hi}", {"field": name})
    return value


def query_enum(request: web.Request, name: str, enum: type[E]) -> E | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return enum(raw)  # "" is none of the values either
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise BadRequest(f"query parameter {name!r} must be one of: {allowed}", {"field": name}) from None


def reply(value: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> web.Response:
    # by alias: a field named for a BaseModel attribute is spelled otherwise in Python
    # (SourceGroup.copy_ is "copy" on the wire)
    if isinstance(value, BaseModel):
        text = value.model_dump_json(by_alias=True)
    else:
        text = _dump(value)
    return web.Response(text=text, status=status, content_type="application/json")


def _dump(value: Any) -> str:
    return to_json(value, by_alias=True).decode()


def actor(request: web.Request) -> Actor:
    op = request[OPERATOR_KEY]
    return Actor("user", op.id, op.username)


def job_accepted(job: BaseModel) -> web.Response:
    """202 for a job an action started. The protocol writes the reply as `{job}`: it is the job
    itself, with the same job also under "job", so both readings of that shorthand hold
    (docs/architecture.md, "Decisions the protocol leaves open")."""
    fields = job.model_dump(mode="json")
    return reply({**fields, "job": fields}, 202)
