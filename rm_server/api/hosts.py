"""Hosts, their repository credentials, bandwidth caps and snapshots."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import BandwidthBody, Host, HostPatch, RepoBody, RepoInfo, RepoPutResponse, Snapshot
from rm_core.enums import CredentialSlot, HostStatus, RepoTarget, Role
from rm_server.api.common import actor, parse_body, query_enum, query_int, reply, requires
from rm_server.api.doc import Listing, documented, q_enum, q_int, q_str
from rm_server.keys import COPIES, CREDENTIALS, HOSTS, STORE

routes = web.RouteTableDef()


@routes.get("/api/v1/hosts")
@requires(Role.viewer)
@documented("List hosts", reply=Listing("hosts", Host), query=(
    q_enum("status", HostStatus, "only hosts in this state"),
    q_str("q", "only hosts whose hostname contains this text"),
    q_int("limit", 0, 100_000, 0, "at most this many hosts (0: all)"),
    q_str("after", "the page after this host id (keyset paging, ordered by id)"),
))
async def list_hosts(request: web.Request) -> web.Response:
    body = await request.app[STORE].hosts.list_json(
        status=query_enum(request, "status", HostStatus), q=request.query.get("q") or None,
        limit=query_int(request, "limit", 0, 0, 100_000) or None, after=request.query.get("after") or None,
    )
    return web.Response(body=body, content_type="application/json", charset="utf-8")


@routes.get("/api/v1/hosts/{id}")
@requires(Role.viewer)
@documented("One host", reply=Host)
async def get_host(request: web.Request) -> web.Response:
    return reply(await request.app[STORE].hosts.get(request.match_info["id"]))


@routes.patch("/api/v1/hosts/{id}")
@requires(Role.operator)
@documented("Rename a host", body=HostPatch, reply=Host, examples={"rename": {"hostname": "web-1.example"}})
async def patch_host(request: web.Request) -> web.Response:
    body = await parse_body(request, HostPatch)
    return reply(await request.app[HOSTS].rename(actor(request), request.match_info["id"], body.hostname))


@routes.delete("/api/v1/hosts/{id}")
@requires(Role.operator)
@documented("Delete a host and revoke its agent token", reply=None, status=204)
async def delete_host(request: web.Request) -> web.Response:
    await request.app[HOSTS].delete(actor(request), request.match_info["id"])
    return web.Response(status=204)


async def _put_credentials(request: web.Request, slot: CredentialSlot) -> web.Response:
    body = await parse_body(request, RepoBody)
    return reply(await request.app[CREDENTIALS].put(actor(request), request.match_info["id"], slot, body))


@routes.put("/api/v1/hosts/{id}/repo")
@requires(Role.operator)
@documented("Set the host's repository and its password",
            description="Give the repository password as `password`, or `generate_password: true` to have the server "
                        "make one (returned once, in this reply), not both. `rest_user`/`rest_password` are the "
                        "HTTP credentials of a rest-server repository; with `generate_password` and `rest_user` "
                        "and no `rest_password` the server makes that too and returns the htpasswd line. "
                        "The agent gets them at once and a fresh repository is initialised (an `init` job).",
            body=RepoBody, reply=RepoPutResponse,
            examples={"own password": {"url": "sftp:backup@nas:/srv/restic/web-1", "password": "repository secret"},
                      "generated, rest-server": {"url": "rest:https://backup.example:8000/web-1",
                                                 "generate_password": True, "rest_user": "web-1"}})
async def put_repo(request: web.Request) -> web.Response:
    return await _put_credentials(request, CredentialSlot.repo)


@routes.get("/api/v1/hosts/{id}/repo")
@requires(Role.viewer)
@documented("The host's repository: URL with secrets redacted, key fingerprint, stats", reply=RepoInfo)
async def get_repo(request: web.Request) -> web.Response:
    return reply(await request.app[CREDENTIALS].info(request.match_info["id"], CredentialSlot.repo))


@routes.put("/api/v1/hosts/{id}/repo/admin-credentials")
@requires(Role.operator)
@documented("Set the credentials used only for prune (same body as PUT /api/v1/hosts/{id}/repo)",
            description="For a repository whose everyday credentials may only append (rest-server "
                        "--append-only): prune runs with these instead.",
            body=RepoBody, reply=RepoPutResponse,
            examples={"prune user": {"url": "rest:https://backup.example:8000/web-1", "password": "repository secret",
                                     "rest_user": "web-1-admin", "rest_password": "admin secret"}})
async def put_admin_credentials(request: web.Request) -> web.Response:
    return await _put_credentials(request, CredentialSlot.admin)


@routes.put("/api/v1/hosts/{id}/repo/copy")
@requires(Role.operator)
@documented("Set the host's copy repository (the second copy of its source groups)",
            description="Same body, sealing and redaction as PUT /api/v1/hosts/{id}/repo: the copy repository has "
                        "its own password (give it, or `generate_password: true`). A fresh copy repository is "
                        "initialised (an `init` job with `repo: \"copy\"`). Source groups whose `copy.enabled` "
                        "is true are then copied into it after each successful backup, or by their `copy.cron`. "
                        "Needs an agent with the `copy` feature.",
            body=RepoBody, reply=RepoPutResponse,
            examples={"offsite rest-server, append-only": {
                "url": "rest:https://offsite.example:8000/web-1", "generate_password": True, "rest_user": "web-1"}})
async def put_copy_repo(request: web.Request) -> web.Response:
    return await _put_credentials(request, CredentialSlot.copy)


@routes.get("/api/v1/hosts/{id}/repo/copy")
@requires(Role.viewer)
@documented("The host's copy repository: URL with secrets redacted, key fingerprint, stats", reply=RepoInfo)
async def get_copy_repo(request: web.Request) -> web.Response:
    return reply(await request.app[CREDENTIALS].info(request.match_info["id"], CredentialSlot.copy))


@routes.delete("/api/v1/hosts/{id}/repo/copy")
@requires(Role.operator)
@documented("Unset the host's copy repository (the repository itself is left as it is)", reply=None, status=204)
async def delete_copy_repo(request: web.Request) -> web.Response:
    await request.app[CREDENTIALS].delete(actor(request), request.match_info["id"], CredentialSlot.copy)
    return web.Response(status=204)


@routes.put("/api/v1/hosts/{id}/bandwidth")
@requires(Role.operator)
@documented("Cap the host's restic upload and download (KiB/s; null: no cap)", body=BandwidthBody,
            reply=BandwidthBody, examples={"cap upload": {"upload_kbps": 2048}})
async def put_bandwidth(request: web.Request) -> web.Response:
    body = await parse_body(request, BandwidthBody)
    await request.app[CREDENTIALS].set_bandwidth(actor(request), request.match_info["id"], body)
    return reply(body)


@routes.get("/api/v1/hosts/{id}/bandwidth")
@requires(Role.viewer)
@documented("The host's bandwidth caps", reply=BandwidthBody)
async def get_bandwidth(request: web.Request) -> web.Response:
    # Both caps, null when unset: the stored object leaves out a cap never set.
    return reply(BandwidthBody.model_validate(await request.app[STORE].hosts.get_json(request.match_info["id"],
                                                                                       "bandwidth")))


@routes.get("/api/v1/hosts/{id}/snapshots")
@requires(Role.viewer)
@documented("The host's snapshots, as its agent last reported them. `summary` is restic's own (0.17 and "
            "newer); on older restic, which keeps none in a snapshot, it is the summary of the backup job that "
            "made it (null for a snapshot no job of this server made)", reply=Listing("snapshots", Snapshot), query=(
    q_enum("repo", RepoTarget, "`copy`: the copy repository's snapshots (a copied one names its source as "
                               "`original`)"),
))
async def list_snapshots(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    repo = query_enum(request, "repo", RepoTarget)
    await request.app[STORE].hosts.get(host_id)
    if repo == RepoTarget.copy:
        return reply({"snapshots": await request.app[COPIES].copies.snapshots(host_id)})
    return reply({"snapshots": await request.app[STORE].reports.snapshots(host_id)})
