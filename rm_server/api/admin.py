"""Maintenance cadences, the audit log and server settings."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import Maintenance, ServerSettings
from rm_core.enums import Role
from rm_server.api.common import actor, parse_body, query_int, reply, requires
from rm_server.errors import BadRequest
from rm_server.keys import STORE

routes = web.RouteTableDef()


@routes.get("/api/v1/hosts/{id}/maintenance")
@requires(Role.viewer)
async def get_maintenance(request: web.Request) -> web.Response:
    stored = await request.app[STORE].hosts.get_json(request.match_info["id"], "maintenance")
    return reply(Maintenance.model_validate(stored))


@routes.put("/api/v1/hosts/{id}/maintenance")
@requires(Role.operator)
async def put_maintenance(request: web.Request) -> web.Response:
    body = await parse_body(request, Maintenance)
    await request.app[STORE].hosts.set_json(actor(request), request.match_info["id"], "maintenance",
                                            body.model_dump(mode="json"))
    return reply(body)


@routes.get("/api/v1/audit")
@requires(Role.viewer)
async def list_audit(request: web.Request) -> web.Response:
    before = request.query.get("before")
    if before is not None and not before.isdigit():
        raise BadRequest("query parameter 'before' must be an audit entry id", {"field": "before"})
    entries = await request.app[STORE].audit.list(limit=query_int(request, "limit", 100, 1, 1000),
                                                  before=int(before) if before else None)
    return reply({"entries": entries})


@routes.get("/api/v1/settings")
@requires(Role.viewer)
async def get_settings(request: web.Request) -> web.Response:
    return reply(ServerSettings(webhook_url=await request.app[STORE].settings.get("webhook_url")))


@routes.put("/api/v1/settings")
@requires(Role.admin)
async def put_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, ServerSettings)
    await request.app[STORE].settings.set(actor(request), "webhook_url", body.webhook_url)
    return reply(body)
