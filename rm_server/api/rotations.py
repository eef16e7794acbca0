"""Repository key rotation: one host, its state, or many hosts at once."""

from __future__ import annotations

from aiohttp import web

from rm_core.enums import RepoTarget, Role
from rm_core.rotation import FleetRotateKeyBody, FleetRotation, KeyRotation, RotateKeyBody, RotationStarted
from rm_server.api.common import actor, parse_body, query_enum, reply, requires
from rm_server.api.doc import documented, q_enum
from rm_server.keys import ROTATIONS

routes = web.RouteTableDef()

HOW = ("The agent adds a new key (`restic key add`) and proves the new password opens the repository; the "
       "server then stores the new password (the admin credentials' too when they held the same one) and "
       "sends it to the agent; then the agent removes the old key (`restic key remove`), only once its own "
       "password is the new one. Killed at any point, agent or server, the rotation goes on from where it "
       "was (a lost phase runs again) or rolls back (a failed key add: the new key is removed). States: "
       "adding, committed, done; rolling_back, rolled_back. `keep_old_key`: stop at done without removing the "
       "old key. `repo: \"copy\"`: the copy repository's key. Needs an agent with the `rotate_key` feature.")


@routes.post("/api/v1/hosts/{id}/repo/rotate-key")
@requires(Role.operator)
@documented("Rotate the host's repository key", description=HOW, body=RotateKeyBody, reply=RotationStarted,
            status=202, errors=(409,), examples={"primary": {}, "copy, keep the old key": {
                "repo": "copy", "keep_old_key": True}})
async def rotate_key(request: web.Request) -> web.Response:
    body = await parse_body(request, RotateKeyBody)
    return reply(await request.app[ROTATIONS].start(actor(request), request.match_info["id"], body), 202)


@routes.get("/api/v1/hosts/{id}/repo/rotate-key")
@requires(Role.viewer)
@documented("The host's latest key rotation and its state", reply=KeyRotation,
            query=(q_enum("repo", RepoTarget, "`copy`: the copy repository's (default: the primary's)"),))
async def rotation_state(request: web.Request) -> web.Response:
    repo = query_enum(request, "repo", RepoTarget) or RepoTarget.primary
    return reply(await request.app[ROTATIONS].latest(request.match_info["id"], repo))


@routes.post("/api/v1/fleet/rotate-key")
@requires(Role.operator)
@documented("Rotate the repository keys of many hosts",
            description="Each selected host (`hosts`: ids, status, q; none: every host) gets a rotation of its "
                        "own, as POST /api/v1/hosts/{id}/repo/rotate-key starts it; hosts that cannot start one "
                        "now are listed in `skipped` with the reason (no credentials, one under way, an agent "
                        "too old). " + HOW,
            body=FleetRotateKeyBody, reply=FleetRotation, status=202,
            examples={"online hosts": {"hosts": {"status": "online"}}, "two hosts": {"hosts": {"ids": ["h1", "h2"]}}})
async def rotate_fleet(request: web.Request) -> web.Response:
    body = await parse_body(request, FleetRotateKeyBody)
    result = await request.app[ROTATIONS].fleet(actor(request), body.hosts, RotateKeyBody(
        repo=body.repo, keep_old_key=body.keep_old_key))
    return reply(result, 202)
