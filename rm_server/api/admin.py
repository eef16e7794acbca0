"""Maintenance cadences, the audit log and server settings."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import AuditEntry, Maintenance, ServerSettings
from rm_core.bounds import INT64_MAX
from rm_core.enums import Role
from rm_core.urls import redact_webhook
from rm_server.api.common import OPERATOR_KEY, actor, parse_body, query_int, reply, requires
from rm_server.api.doc import Listing, Query, documented, q_int
from rm_server.errors import BadRequest
from rm_server.keys import MAINTAINER, NOTIFIER, STORE

routes = web.RouteTableDef()


@routes.get("/api/v1/hosts/{id}/maintenance")
@requires(Role.viewer)
@documented("The host's maintenance cadences (forget, prune, check)", reply=Maintenance)
async def get_maintenance(request: web.Request) -> web.Response:
    stored = await request.app[STORE].hosts.get_json(request.match_info["id"], "maintenance")
    return reply(Maintenance.model_validate(stored))


@routes.put("/api/v1/hosts/{id}/maintenance")
@requires(Role.operator)
@documented("Set the host's maintenance cadences", description="Crons run in UTC; an enabled task needs a cron.",
            body=Maintenance, reply=Maintenance,
            examples={"weekly": {"forget": {"enabled": True, "cron": "0 4 * * 0"},
                                 "prune": {"enabled": True, "cron": "0 5 * * 0"},
                                 "check": {"enabled": True, "cron": "0 6 1 * *", "read_data_subset": "5%"}}})
async def put_maintenance(request: web.Request) -> web.Response:
    body = await parse_body(request, Maintenance)
    await request.app[MAINTAINER].set_cadences(actor(request), request.match_info["id"], body)
    return reply(body)


@routes.get("/api/v1/audit")
@requires(Role.viewer)
@documented("The audit log, newest first", reply=Listing("entries", AuditEntry), query=(
    q_int("limit", 1, 1000, 100, "at most this many entries"),
    Query("before", {"type": "integer", "minimum": 0, "maximum": INT64_MAX}, "the page before this audit entry id"),
))
async def list_audit(request: web.Request) -> web.Response:
    before = request.query.get("before")
    # str.isdigit() is true for "²" and int() takes any size: ASCII digits within int64 only.
    if before is not None and before != "" and not (before.isascii() and before.isdigit()
                                                    and int(before) <= INT64_MAX):
        raise BadRequest("query parameter 'before' must be an audit entry id", {"field": "before"})
    entries = await request.app[STORE].audit.page(limit=query_int(request, "limit", 100, 1, 1000),
                                                  before=int(before) if before else None)
    return reply({"entries": entries})


@routes.get("/api/v1/settings")
@requires(Role.viewer)
@documented("Server settings", reply=ServerSettings)
async def get_settings(request: web.Request) -> web.Response:
    url = await request.app[STORE].settings.get("webhook_url")
    # Slack/Teams-style hook URLs are bearer secrets: only admins (who set them) see them whole.
    if not request[OPERATOR_KEY].role.allows(Role.admin):
        url = redact_webhook(url)
    return reply(ServerSettings.model_construct(webhook_url=url))


@routes.put("/api/v1/settings")
@requires(Role.admin)
@documented("Change server settings", description="`webhook_url`: failed and lost jobs are POSTed there "
                                                  "(null: no webhook). Redirects are not followed; a link-local "
                                                  "address (169.254.0.0/16, fe80::/10) is refused unless the "
                                                  "server runs with --allow-link-local-alerts.",
            body=ServerSettings, reply=ServerSettings,
            examples={"webhook": {"webhook_url": "https://hooks.example/restic"}})
async def put_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, ServerSettings)
    await request.app[NOTIFIER].set_url(actor(request), body.webhook_url)
    return reply(body)
