"""The API reference itself: this server's OpenAPI 3.1 document."""

from __future__ import annotations

import asyncio

from aiohttp import web

from rm_core.enums import Role
from rm_server.api.common import reply, requires
from rm_server.alert_send import known_schemes
from rm_server.api.doc import documented
from rm_server.openapi import build

routes = web.RouteTableDef()

@routes.get("/api/v1/openapi.json")
@requires(Role.viewer)
@documented("This API as an OpenAPI 3.1 document",
            description="Generated from the routes and the rm_core models of this very server; "
                        "docs/api.md is the same document rendered for reading.",
            reply={"type": "object", "description": "An OpenAPI 3.1 document."})
async def openapi_json(request: web.Request) -> web.Response:
    # Built on each call (a few ms, rarely asked): no cache to keep in step with the router.
    # Apprise's scheme list loads every plugin the first time (~0.25 s): not on the loop.
    await asyncio.to_thread(known_schemes)
    return reply(build(request.app))
