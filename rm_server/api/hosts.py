"""Hosts, their repository credentials, bandwidth caps and snapshots."""

from __future__ import annotations

import secrets

import bcrypt
from aiohttp import web

from rm_core import protocol as p
from rm_core.api import BandwidthBody, HostPatch, RepoBody, RepoInfo, RepoPutResponse
from rm_core.enums import CredentialSlot, HostStatus, Role
from rm_core.urls import redact_url
from rm_server.api.common import actor, parse_body, query_enum, query_int, reply, requires
from rm_server.keys import AGENTS, SERVICES, STORE
from rm_server.security import secret_fingerprint
from rm_server.store import NotFound
from rm_server.store.common import dt

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
    store, host_id = request.app[STORE], request.match_info["id"]
    host = await store.hosts.get(host_id)
    if body.hostname is not None:
        host = await store.hosts.rename(actor(request), host_id, body.hostname)
        await request.app[SERVICES].host_changed(host_id)
    return reply(host)


@routes.delete("/api/v1/hosts/{id}")
@requires(Role.operator)
async def delete_host(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    await request.app[STORE].hosts.delete(actor(request), host_id)
    conn = request.app[AGENTS].connections.pop(host_id, None)
    if conn is not None:
        conn.close(4001, "host deleted; agent token revoked")
    await request.app[SERVICES].host_changed(host_id)
    return web.Response(status=204)


async def _put_credentials(request: web.Request, slot: CredentialSlot) -> web.Response:
    body = await parse_body(request, RepoBody)
    store, services, host_id = request.app[STORE], request.app[SERVICES], request.match_info["id"]
    await store.hosts.get(host_id)
    password, htpasswd, rest_password = body.password, None, body.rest_password
    if body.generate_password:
        password = secrets.token_urlsafe(32)
        if body.rest_user and not rest_password:
            rest_password = secrets.token_urlsafe(24)
    if body.rest_user and rest_password and body.generate_password:
        hashed = bcrypt.hashpw(rest_password.encode(), bcrypt.gensalt(rounds=10)).decode()
        htpasswd = f"{body.rest_user}:{hashed}"
    creds = p.RepoCredentials(slot=slot, url=body.url, password=password, rest_user=body.rest_user,
                              rest_password=rest_password)
    await store.credentials.put(actor(request), host_id, slot.value, redact_url(body.url),
                                services.seal(host_id, creds), secret_fingerprint(password or ""))
    await services.config_changed(host_id)
    if slot == CredentialSlot.repo:
        await services.auto_init(host_id)
    info = await _repo_info(request, host_id, slot)
    # A generated password is shown this once; the htpasswd line goes into the REST server.
    return reply(RepoPutResponse(**info.model_dump(), password=password if body.generate_password else None,
                                 htpasswd_line=htpasswd))


async def _repo_info(request: web.Request, host_id: str, slot: CredentialSlot) -> RepoInfo:
    store = request.app[STORE]
    row = await store.credentials.get(host_id, slot.value)
    if row is None:
        raise NotFound(f"{slot.value} credentials for host", host_id)
    admin = slot == CredentialSlot.admin or await store.credentials.get(host_id, "admin") is not None
    return RepoInfo(url=row["url_redacted"], key_fingerprint=row["key_fingerprint"], updated_at=dt(row["updated_at"]),
                    stats=await store.reports.stats(host_id), has_admin_credentials=admin)


@routes.put("/api/v1/hosts/{id}/repo")
@requires(Role.operator)
async def put_repo(request: web.Request) -> web.Response:
    return await _put_credentials(request, CredentialSlot.repo)


@routes.get("/api/v1/hosts/{id}/repo")
@requires(Role.viewer)
async def get_repo(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    await request.app[STORE].hosts.get(host_id)
    return reply(await _repo_info(request, host_id, CredentialSlot.repo))


@routes.put("/api/v1/hosts/{id}/repo/admin-credentials")
@requires(Role.operator)
async def put_admin_credentials(request: web.Request) -> web.Response:
    return await _put_credentials(request, CredentialSlot.admin)


@routes.put("/api/v1/hosts/{id}/bandwidth")
@requires(Role.operator)
async def put_bandwidth(request: web.Request) -> web.Response:
    body = await parse_body(request, BandwidthBody)
    host_id = request.match_info["id"]
    value = body.model_dump(exclude_none=True)
    await request.app[STORE].hosts.set_json(actor(request), host_id, "bandwidth", value)
    await request.app[SERVICES].config_changed(host_id)
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
