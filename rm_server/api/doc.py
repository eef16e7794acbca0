"""The API reference, declared next to each route: `@documented(...)` under `@requires(...)`.

rm_server/openapi.py reads these marks from a real router to build the OpenAPI document
(served at /api/v1/openapi.json, rendered to docs/api.md); tests/server/test_openapi.py fails
for any route without one. Bodies and replies are the rm_core models themselves, so the
reference cannot drift from what the server parses and sends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from pydantic import BaseModel, TypeAdapter

DOC_ATTR = "__rm_doc__"


@dataclass(frozen=True)
class Listing:
    """A collection reply: `{"<key>": [model, ...]}` (docs/api.md, Conventions)."""

    key: str
    model: type[BaseModel]


@dataclass(frozen=True)
class Accepted:
    """A 202 for a job an action started: the job itself, the same job also under "job"."""

    model: type[BaseModel]


@dataclass(frozen=True)
class Raw:
    """Anything not JSON (text, a script, a file): its media type and what it is."""

    media_type: str
    description: str


# A reply: a model, one of the shapes above, or an inline JSON schema for a tiny object.
Shape = Union[type[BaseModel], Listing, Accepted, Raw, dict[str, Any]]


@dataclass(frozen=True)
class Query:
    """One query parameter: its JSON schema and what it does."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


def q_int(name: str, lo: int, hi: int, default: int | None, description: str) -> Query:
    schema: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi}
    if default is not None:
        schema["default"] = default
    return Query(name, schema, description)


def q_enum(name: str, enum: type[Enum], description: str) -> Query:
    return Query(name, {"type": "string", "enum": [e.value for e in enum]}, description)


def q_str(name: str, description: str, required: bool = False, **rules: Any) -> Query:
    """A text parameter; `rules` are JSON-schema keywords (pattern, maxLength) the handler's
    rm_core model enforces. An empty value counts as left out, so an optional one's pattern
    should admit the empty string."""
    return Query(name, {"type": "string", **rules}, description, required)


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    description: str = ""
    body: type[BaseModel] | None = None
    examples: dict[str, Any] = field(default_factory=dict)
    reply: Shape | None = None
    status: int = 200
    query: tuple[Query, ...] = ()
    errors: tuple[int, ...] = ()
    websocket: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    path: dict[str, TypeAdapter[Any]] = field(default_factory=dict)


def documented(summary: str, *, description: str = "", body: type[BaseModel] | None = None,
               examples: dict[str, Any] | None = None, reply: Shape | None = None, status: int = 200,
               query: tuple[Query, ...] | list[Query] = (), errors: tuple[int, ...] = (),
               websocket: bool = False, headers: dict[str, str] | None = None,
               path: dict[str, TypeAdapter[Any]] | None = None) -> Callable[[Any], Any]:
    """Describe a route for the reference. `body`: the model `parse_body` reads; `examples`:
    named bodies (each must validate, the tests check); `reply`: what a success carries
    (None: no body, e.g. 204); `errors`: statuses beyond those the route's shape implies
    (400 with a body or query, 401/403 by role, 404 with a path id, 413 with a body);
    `headers`: response headers a success carries, name -> meaning; `path`: the rm_core type of
    a path parameter the handler checks (with rm_server.api.common.path_param), name -> its
    TypeAdapter (others are any string)."""
    doc = RouteDoc(summary, description, body, dict(examples or {}), reply, status, tuple(query), tuple(errors),
                   websocket, dict(headers or {}), dict(path or {}))

    def mark(handler: Any) -> Any:
        setattr(handler, DOC_ATTR, doc)
        return handler

    return mark


def route_doc(handler: Any) -> RouteDoc | None:
    return getattr(handler, DOC_ATTR, None)
