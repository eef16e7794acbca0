"""Enrollment tokens and the agent's enrollment call."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import EnrollBody, EnrollmentTokenCreate
from rm_core.enums import Role
from rm_server.api.common import PUBLIC, actor, parse_body, reply, requires
from rm_server.keys import ENROLLMENT, HOSTS, STORE

routes = web.RouteTableDef()


@routes.post("/api/v1/enrollment-tokens")
@requires(Role.operator)
async def create_token(request: web.Request) -> web.Response:
    body = await parse_body(request, EnrollmentTokenCreate)
    return reply(await request.app[ENROLLMENT].create_token(actor(request), body), 201)


@routes.get("/api/v1/enrollment-tokens")
@requires(Role.operator)
async def list_tokens(request: web.Request) -> web.Response:
    return reply({"tokens": await request.app[STORE].enrollment.list()})


@routes.delete("/api/v1/enrollment-tokens/{id}")
@requires(Role.operator)
async def delete_token(request: web.Request) -> web.Response:
    await request.app[STORE].enrollment.delete(actor(request), request.match_info["id"])
    return web.Response(status=204)


@routes.post("/api/v1/agents/enroll")
@requires(PUBLIC)
async def enroll(request: web.Request) -> web.Response:
    body = await parse_body(request, EnrollBody)
    enrolled = await request.app[ENROLLMENT].enroll(body)
    await request.app[HOSTS].changed(enrolled.host_id)  # consoles show the new (pending) host at once
    return reply(enrolled, 201)
