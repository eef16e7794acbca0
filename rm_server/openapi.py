"""The OpenAPI 3.1 document of the REST API, built from a real router: each route's role
(`@requires`) and reference (`@documented`), and the rm_core models' own JSON schemas."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from rm_core.alerts import CHANNEL_URL_PATTERN
from rm_core.api import ErrorBody
from rm_core.bounds import NAMED_KEY
from rm_core.enums import Role
from rm_core.version import __version__
from rm_server.alert_send import known_schemes
from rm_server.api.common import AGENT, PUBLIC, route_role
from rm_server.api.doc import Accepted, Listing, Raw, RouteDoc, route_doc

REF = "#/components/schemas/{model}"
ERRORS = {
    400: ("BadRequest", "Malformed JSON (`malformed_json`) or an invalid field or query parameter (`invalid`); "
                        "`details.field` and `details.fields[]` name what is wrong."),
    401: ("Unauthorized", "No bearer token, or one that is unknown, revoked or expired."),
    403: ("Forbidden", "Signed in, but the role is too low for this route."),
    404: ("NotFound", "A resource named in the path, or referenced by the body, does not exist "
                      "(`details.resource`, `details.id`)."),
    409: ("Conflict", "The change conflicts with the current state; `details` says with what."),
    413: ("PayloadTooLarge", "The request body is larger than the server accepts (1 MiB by default)."),
    429: ("TooManyRequests", "Too many attempts; `details.retry_after` is the wait in seconds."),
    502: ("BadGateway", "The host's agent or restic failed to answer a live question (`bad_agent_reply`, "
                        "restic's error in `message`)."),
    503: ("Unavailable", "The server cannot take this now; try again later."),
    504: ("GatewayTimeout", "The host's agent did not answer a live question in time (`agent_timeout`)."),
}
INFO = ("The REST API of rm-server. Paths under /api/v1 take JSON and answer JSON; /healthz, /metrics "
        "and /install/* live at the root. Every failure is the error envelope "
        "`{\"error\": {code, message, details}}`. A single resource is the bare object, a collection "
        "`{\"<plural>\": [...]}`. Roles: viewer reads everything, operator also changes everything but "
        "operators and server settings, admin everything; `x-required-role` names the least role "
        "of each operation. Authorization is decided before the body is validated.")
SKIP_METHODS = {"HEAD", "OPTIONS"}


class _Schemas(GenerateJsonSchema):
    """A reply always carries every field (the server dumps whole models), so in a reply's schema
    every field is required; a body's optional fields stay optional. A model used both ways
    then appears twice, as `Name-Input` and `Name-Output`."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization" and field.get("serialization_exclude_if") is None:
            return True
        return super().field_is_required(field, total)


def real_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every route the router serves, in registration order."""
    out = []
    for route in app.router.routes():
        if route.method in SKIP_METHODS or route.resource is None:
            continue
        out.append((route.method, route.resource.canonical, route.handler))
    return out


def missing_docs(app: web.Application) -> list[str]:
    """One line per route that has no reference, saying exactly what to add."""
    lines = []
    for method, path, handler in real_routes(app):
        if route_doc(handler) is None:
            where = f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__name__', handler)}"
            lines.append(f"{method} {path} ({where}) has no API reference: add "
                         f"`@documented(\"summary\", body=<rm_core model>, reply=<model|Listing|Accepted>)` "
                         f"from rm_server.api.doc under its @requires line, then run scripts/api-docs")
    return lines


def effective_role(path: str, handler: Any) -> Role | str:
    """The role auth_middleware enforces: an unmarked /api/ route is admin-only (fails closed)."""
    role = route_role(handler)
    if role is None:
        return PUBLIC if not path.startswith("/api/") else Role.admin
    return role


def _tag(handler: Any) -> tuple[str, str]:
    """The route's group: its module's last name, described by the module docstring's first line."""
    module = sys.modules.get(getattr(handler, "__module__", ""), None)
    name = getattr(handler, "__module__", "other").rsplit(".", 1)[-1]
    text = (getattr(module, "__doc__", None) or "").strip().split("\n\n")[0]
    return name, " ".join(text.split())


Mode = Literal["validation", "serialization"]
# pydantic's $ref for each (model, mode) the document names
Refs = Mapping[tuple[Any, Mode], dict[str, Any]]


def _models(doc: RouteDoc) -> list[tuple[type[BaseModel], Mode]]:
    found: list[tuple[type[BaseModel], Mode]] = []
    if doc.body is not None:
        found.append((doc.body, "validation"))
    reply = doc.reply
    if isinstance(reply, (Listing, Accepted)):
        found.append((reply.model, "serialization"))
    elif isinstance(reply, type) and issubclass(reply, BaseModel):
        found.append((reply, "serialization"))
    return found


def _reply_schema(reply: Any, refs: Refs) -> dict[str, Any]:
    if isinstance(reply, Listing):
        return {"type": "object", "required": [reply.key],
                "properties": {reply.key: {"type": "array", "items": refs[(reply.model, "serialization")]}}}
    if isinstance(reply, Accepted):
        ref = refs[(reply.model, "serialization")]
        return {"allOf": [ref, {"type": "object", "required": ["job"], "properties": {"job": ref}}]}
    if isinstance(reply, dict):
        return reply
    return refs[(reply, "serialization")]


def _responses(doc: RouteDoc, role: Any, path: str, refs: Refs) -> dict[str, Any]:
    ok: dict[str, Any]
    if doc.websocket:
        ok = {"description": doc.summary + " (WebSocket upgrade; frames: docs/protocol.md)"}
        status = 101
    elif doc.reply is None:
        ok, status = {"description": "Done; no body."}, doc.status
    elif isinstance(doc.reply, Raw):
        ok = {"description": doc.reply.description,
              "content": {doc.reply.media_type: {"schema": {"type": "string"}}}}
        status = doc.status
    else:
        ok = {"description": "Success.", "content": {"application/json": {"schema": _reply_schema(doc.reply, refs)}}}
        status = doc.status
    if doc.headers:
        ok["headers"] = {name: {"description": text, "schema": {"type": "string"}} for name, text in doc.headers.items()}
    out: dict[str, Any] = {str(status): ok}
    codes = set(doc.errors)
    if doc.body is not None or doc.query or doc.path or doc.websocket:
        codes.add(400)
    if doc.body is not None:
        codes.add(413)
    if role != PUBLIC:
        codes.add(401)
    if isinstance(role, Role) and role != Role.viewer:
        codes.add(403)
    if "{" in path:
        codes.add(404)
    for code in sorted(codes):
        out[str(code)] = {"$ref": f"#/components/responses/{ERRORS[code][0]}"}
    return out


def _operation(method: str, path: str, handler: Any, refs: Refs) -> dict[str, Any]:
    doc = route_doc(handler)
    assert doc is not None
    role = effective_role(path, handler)
    tag, _ = _tag(handler)
    op: dict[str, Any] = {
        "operationId": f"{tag}.{handler.__name__}",
        "summary": doc.summary,
        "tags": [tag],
        "x-required-role": str(role),
    }
    if doc.description:
        op["description"] = doc.description
    if role == PUBLIC:
        op["security"] = []
    elif role == AGENT:
        op["security"] = [{"agentToken": []}]
    params = [{"name": name, "in": "path", "required": True,
               "schema": doc.path[name].json_schema() if name in doc.path else {"type": "string"}}
              for name in re.findall(r"{(\w+)}", path)]
    params += [{"name": q.name, "in": "query", "required": q.required, "description": q.description,
                "schema": q.schema} for q in doc.query]
    if params:
        op["parameters"] = params
    if doc.body is not None:
        media: dict[str, Any] = {"schema": refs[(doc.body, "validation")]}
        if doc.examples:
            media["examples"] = {name: {"value": value} for name, value in doc.examples.items()}
        # parse_body reads an empty body as {}: a body is required exactly when its model needs a field.
        required = any(f.is_required() for f in doc.body.model_fields.values())
        op["requestBody"] = {"required": required, "content": {"application/json": media}}
    op["responses"] = _responses(doc, role, path, refs)
    return op


def _lift_named(node: Any, schemas: dict[str, Any]) -> None:
    """A schema rm_core marks as shared (rm_core.bounds.Named) goes to components/schemas once;
    each use becomes a $ref there, keeping its own default, title and bounds beside it."""
    if isinstance(node, list):
        for item in node:
            _lift_named(item, schemas)
        return
    if not isinstance(node, dict):
        return
    named = node.pop(NAMED_KEY, None)
    if named is not None:
        schemas.setdefault(named["name"], {**named["schema"], "description": named["description"]})
        node.pop("type", None)
        node["$ref"] = REF.format(model=named["name"])
    for value in node.values():
        _lift_named(value, schemas)


def _name_apprise_schemes(node: Any) -> None:
    """A channel URL's scheme must be one the installed Apprise has a service for (the server
    checks it: services/channels.py); rm_core cannot know that list, the document states it."""
    if isinstance(node, dict):
        if node.get("pattern") == CHANNEL_URL_PATTERN:
            schemes = "|".join(re.escape(s) for s in sorted(known_schemes()))
            node["pattern"] = f"^(?:{schemes})://" + CHANNEL_URL_PATTERN.split("://", 1)[1]
            node["description"] = (node.get("description", "") + "; its scheme one of Apprise's services "
                                   "(see Apprise's list; the pattern names them all)").lstrip("; ")
        for value in node.values():
            _name_apprise_schemes(value)
    elif isinstance(node, list):
        for value in node:
            _name_apprise_schemes(value)


def build(app: web.Application) -> dict[str, Any]:
    """The whole document. Routes without a reference are left out (missing_docs names them)."""
    docs = [(m, p, h, doc) for m, p, h in real_routes(app) if (doc := route_doc(h)) is not None]
    error: tuple[type[BaseModel], Mode] = (ErrorBody, "serialization")
    wanted = list(dict.fromkeys([error] + [m for _, _, _, doc in docs for m in _models(doc)]))
    refs, defs = models_json_schema(wanted, ref_template=REF, schema_generator=_Schemas)
    schemas = dict(sorted(defs.get("$defs", {}).items()))
    error_ref = refs[(ErrorBody, "serialization")]
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": error_ref},
                        "description": "The envelope of every failed answer."}
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for method, path, handler, _ in docs:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, handler, refs)
        name, text = _tag(handler)
        tags.setdefault(name, text)
    _lift_named(paths, schemas)
    _lift_named(list(schemas.values()), schemas)
    _name_apprise_schemes(schemas)
    schemas = dict(sorted(schemas.items()))
    responses = {name: {"description": text, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}} for name, text in ERRORS.values()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "restic-manager", "version": __version__, "description": INFO},
        "tags": [{"name": n, "description": t} for n, t in tags.items()],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An operator session token from POST /api/v1/auth/login."},
                "agentToken": {"type": "http", "scheme": "bearer",
                               "description": "An agent token from POST /api/v1/agents/enroll."},
            },
        },
    }
