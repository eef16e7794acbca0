"""Hosts, their repository credentials, bandwidth caps and snapshots."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import BandwidthBody, HostPatch, RepoBody
from rm_core.enums import CredentialSlot, HostStatus, Role
from rm_server.api.common import actor, parse_body, query_enum, query_int, reply, requires
from rm_server.keys import CREDENTIALS, HOSTS, STORE

routes = web.RouteTableDef()


@routes.get("/api/v1/hosts")
@requires(Role.viewer)
async def list_hosts(request: web.Request) -> web.Response:
    body = await request.app[STORE].hosts.list_json(
        status=query_enum(request, "status", HostStatus), q=request.query.get("q") or None,
        limit=query_int(request, "limit", 0, 0, 100_000) or None, after=request.query.get("after") or None,
    )
    return web.Response(text=body, content_type="application/json")


@routes.get("/api/v1/hosts/{id}")
@requires(Role.viewer)
async def get_host(request: web.Request) -> web.Response:
    return reply(await request.app[STORE].hosts.get(request.match_info["id"]))


@routes.patch("/api/v1/hosts/{id}")
@requires(Role.operator)
async def patch_host(request: web.Request) -> web.Response:
    body = await parse_body(request, HostPatch)
    return reply(await request.app[HOSTS].rename(actor(request), request.match_info["id"], body.hostname))


@routes.delete("/api/v1/hosts/{id}")
@requires(Role.operator)
async def delete_host(request: web.Request) -> web.Response:
    await request.app[HOSTS].delete(actor(request), request.match_info["id"])
    return web.Response(status=204)


async def _put_credentials(request: web.Request, slot: CredentialSlot) -> web.Response:
    body = await parse_body(request, RepoBody)
    return reply(await request.app[CREDENTIALS].put(actor(request), request.match_info["id"], slot, body))


@routes.put("/api/v1/hosts/{id}/repo")
@requires(Role.operator)
async def put_repo(request: web.Request) -> web.Response:
    return await _put_credentials(request, CredentialSlot.repo)


@routes.get("/api/v1/hosts/{id}/repo")
@requires(Role.viewer)
async def get_repo(request: web.Request) -> web.Response:
    return reply(await request.app[CREDENTIALS].info(request.match_info["id"], CredentialSlot.repo))


@routes.put("/api/v1/hosts/{id}/repo/admin-credentials")
@requires(Role.operator)
async def put_admin_credentials(request: web.Request) -> web.Response:
    return await _put_credentials(request, CredentialSlot.admin)


@routes.put("/api/v1/hosts/{id}/bandwidth")
@requires(Role.operator)
async def put_bandwidth(request: web.Request) -> web.Response:
    body = await parse_body(request, BandwidthBody)
    await request.app[CREDENTIALS].set_bandwidth(actor(request), request.match_info["id"], body)
    return reply(body)


@routes.get("/api/v1/hosts/{id}/bandwidth")
@requires(Role.viewer)
async def get_bandwidth(request: web.Request) -> web.Response:
    return reply(await request.app[STORE].hosts.get_json(request.match_info["id"], "bandwidth"))


@routes.get("/api/v1/hosts/{id}/snapshots")
@requires(Role.viewer)
async def list_snapshots(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    await request.app[STORE].hosts.get(host_id)
    return reply({"snapshots": await request.app[STORE].reports.snapshots(host_id)})
