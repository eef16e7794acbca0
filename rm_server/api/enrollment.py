"""Enrollment tokens and the agent's enrollment call."""

from __future__ import annotations

import shlex
from datetime import timedelta

from aiohttp import web

from rm_core.api import EnrollBody, EnrollmentTokenCreate, EnrollmentTokenCreated, EnrollResponse
from rm_core.enums import Role
from rm_server.api.common import PUBLIC, actor, parse_body, reply, requires
from rm_server.keys import CONFIG, CREDENTIALS, STORE
from rm_server.security import hash_token, new_token

routes = web.RouteTableDef()


def install_command(public_url: str, token: str, fingerprint: str | None) -> str:
    args = ["--server", public_url, "--token", token]
    if fingerprint:
        args += ["--fingerprint", fingerprint]
    fetch = f"curl -fsSL {'--insecure ' if fingerprint else ''}{shlex.quote(public_url + '/install/install.sh')}"
    return f"{fetch} | sudo sh -s -- {' '.join(shlex.quote(a) for a in args)}"


@routes.post("/api/v1/enrollment-tokens")
@requires(Role.operator)
async def create_token(request: web.Request) -> web.Response:
    body = await parse_body(request, EnrollmentTokenCreate)
    cfg = request.app[CONFIG]
    token = new_token("rme")
    sealed = request.app[CREDENTIALS].seal_for_enrollment(body.repo)
    created = await request.app[STORE].enrollment.create(
        actor(request), hash_token(token), name=body.name, ttl=timedelta(seconds=body.ttl_seconds),
        max_uses=body.max_uses, initial_paths=body.initial_paths, repo_sealed=sealed,
    )
    out = EnrollmentTokenCreated(**created.model_dump(), token=token,
                                 install_command=install_command(cfg.public_url, token, cfg.tls_fingerprint))
    return reply(out, 201)


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
    store = request.app[STORE]
    agent_token = new_token("rma")
    host_id, sealed = await store.enrollment.enroll(
        hash_token(body.token), hash_token(agent_token), hostname=body.hostname, os=body.os, arch=body.arch,
        agent_version=body.agent_version,
    )
    if sealed is not None:
        await request.app[CREDENTIALS].store_enrolled(host_id, sealed)
    return reply(EnrollResponse(host_id=host_id, agent_token=agent_token), 201)
