"""What every REST handler uses: role markers, body parsing, query parsing, JSON replies."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from rm_core.api import Operator
from rm_core.enums import Role
from rm_server.errors import BadRequest
from rm_server.store import Actor

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=Enum)
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


async def parse_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    if not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise BadRequest("request body is not valid JSON", code="malformed_json") from None
        raise BadRequest(validation_message(exc), validation_details(exc)) from None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer", {"field": name}) from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name!r} must be between {lo} and {hi}", {"field": name})
    return value


def query_enum(request: web.Request, name: str, enum: type[E]) -> E | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return enum(raw)
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
