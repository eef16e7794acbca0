"""Operator accounts (admin only)."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import Operator, OperatorCreate, OperatorPatch
from rm_core.enums import Role
from rm_server.api.common import TOKEN_HASH_KEY, actor, parse_body, reply, requires
from rm_server.api.doc import Listing, documented
from rm_server.keys import OPERATORS, STORE

routes = web.RouteTableDef()


@routes.get("/api/v1/operators")
@requires(Role.admin)
@documented("List operators", reply=Listing("operators", Operator))
async def list_operators(request: web.Request) -> web.Response:
    return reply({"operators": await request.app[STORE].operators.all()})


@routes.post("/api/v1/operators")
@requires(Role.admin)
@documented("Create an operator", body=OperatorCreate, reply=Operator, status=201, errors=(409,),
            examples={"viewer": {"username": "bob", "password": "a long password", "role": "viewer"}})
async def create_operator(request: web.Request) -> web.Response:
    body = await parse_body(request, OperatorCreate)
    return reply(await request.app[OPERATORS].create(actor(request), body), 201)


@routes.patch("/api/v1/operators/{id}")
@requires(Role.admin)
@documented("Change an operator's password, role or disabled flag",
            description="Only the fields given change. The last active admin cannot be demoted or disabled, and "
                        "nobody changes their own role or disables themselves (409). A new password ends the "
                        "operator's sessions, except the one that set it.",
            body=OperatorPatch, reply=Operator, errors=(409,), examples={"disable": {"disabled": True}})
async def patch_operator(request: web.Request) -> web.Response:
    body = await parse_body(request, OperatorPatch)
    return reply(await request.app[OPERATORS].update(actor(request), request.match_info["id"], body,
                                                     keep_session=request[TOKEN_HASH_KEY]))


@routes.delete("/api/v1/operators/{id}")
@requires(Role.admin)
@documented("Delete an operator", description="409 for the last active admin and for oneself.",
            reply=None, status=204, errors=(409,))
async def delete_operator(request: web.Request) -> web.Response:
    await request.app[OPERATORS].delete(actor(request), request.match_info["id"])
    return web.Response(status=204)
