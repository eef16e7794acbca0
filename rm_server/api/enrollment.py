"""Enrollment tokens and the agent's enrollment call."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import EnrollBody, EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenCreated, EnrollResponse
from rm_core.enums import Role
from rm_server.api.common import PUBLIC, actor, parse_body, reply, requires
from rm_server.api.doc import Listing, documented
from rm_server.keys import ENROLLMENT, STORE

routes = web.RouteTableDef()


@routes.post("/api/v1/enrollment-tokens")
@requires(Role.operator)
@documented("Create an enrollment token and the one-line install command",
            description="The token is shown once (stored hashed). `repo`, if given, is handed to each host that "
                        "enrolls with the token, like PUT /api/v1/hosts/{id}/repo.",
            body=EnrollmentTokenCreate, reply=EnrollmentTokenCreated, status=201,
            examples={"one host": {"name": "web-1", "initial_paths": ["/etc", "/srv"]},
                      "with a repository": {"ttl_seconds": 86400, "max_uses": 10,
                                            "repo": {"url": "rest:https://backup.example:8000/",
                                                     "generate_password": True}}})
async def create_token(request: web.Request) -> web.Response:
    body = await parse_body(request, EnrollmentTokenCreate)
    return reply(await request.app[ENROLLMENT].create_token(actor(request), body), 201)


@routes.get("/api/v1/enrollment-tokens")
@requires(Role.operator)
@documented("List enrollment tokens (never the token itself)", reply=Listing("tokens", EnrollmentToken))
async def list_tokens(request: web.Request) -> web.Response:
    return reply({"tokens": await request.app[STORE].enrollment.all()})


@routes.delete("/api/v1/enrollment-tokens/{id}")
@requires(Role.operator)
@documented("Revoke an enrollment token", reply=None, status=204)
async def delete_token(request: web.Request) -> web.Response:
    await request.app[ENROLLMENT].revoke(actor(request), request.match_info["id"])
    return web.Response(status=204)


@routes.post("/api/v1/agents/enroll")
@requires(PUBLIC)
@documented("Enroll an agent with an enrollment token (what `rm-agent enroll` calls)",
            body=EnrollBody, reply=EnrollResponse, status=201, errors=(401,),
            examples={"agent": {"token": "rme_…", "hostname": "web-1", "os": "linux", "arch": "x86_64",
                                "agent_version": "0.1.0"}})
async def enroll(request: web.Request) -> web.Response:
    body = await parse_body(request, EnrollBody)
    return reply(await request.app[ENROLLMENT].enroll(body), 201)
