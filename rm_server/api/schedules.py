"""Source groups and schedules of a host; the schedule service pushes each change to the agent."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import JobBody, ScheduleBody, SourceGroupBody
from rm_core.enums import JobKind, Role
from rm_server.api.common import actor, job_accepted, parse_body, reply, requires
from rm_server.keys import JOBS, SCHEDULES, STORE

routes = web.RouteTableDef()


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["id"], request.match_info["sid"]


@routes.get("/api/v1/hosts/{id}/source-groups")
@requires(Role.viewer)
async def list_groups(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    await request.app[STORE].hosts.get(host_id)
    return reply({"source_groups": await request.app[STORE].schedules.groups(host_id)})


@routes.post("/api/v1/hosts/{id}/source-groups")
@requires(Role.operator)
async def create_group(request: web.Request) -> web.Response:
    body = await parse_body(request, SourceGroupBody)
    host_id = request.match_info["id"]
    return reply(await request.app[SCHEDULES].create_group(actor(request), host_id, body), 201)


@routes.get("/api/v1/hosts/{id}/source-groups/{sid}")
@requires(Role.viewer)
async def get_group(request: web.Request) -> web.Response:
    return reply(await request.app[STORE].schedules.group(*_ids(request)))


@routes.put("/api/v1/hosts/{id}/source-groups/{sid}")
@requires(Role.operator)
async def put_group(request: web.Request) -> web.Response:
    body = await parse_body(request, SourceGroupBody)
    host_id, gid = _ids(request)
    return reply(await request.app[SCHEDULES].update_group(actor(request), host_id, gid, body))


@routes.delete("/api/v1/hosts/{id}/source-groups/{sid}")
@requires(Role.operator)
async def delete_group(request: web.Request) -> web.Response:
    host_id, gid = _ids(request)
    await request.app[SCHEDULES].delete_group(actor(request), host_id, gid)
    return web.Response(status=204)


@routes.post("/api/v1/hosts/{id}/source-groups/{sid}/run")
@requires(Role.operator)
async def run_group(request: web.Request) -> web.Response:
    host_id, gid = _ids(request)
    job = await request.app[JOBS].new_job(actor(request), host_id, JobBody(kind=JobKind.backup, source_group_id=gid))
    return job_accepted(job)


@routes.get("/api/v1/hosts/{id}/schedules")
@requires(Role.viewer)
async def list_schedules(request: web.Request) -> web.Response:
    return reply(await request.app[SCHEDULES].list(request.match_info["id"]))


@routes.post("/api/v1/hosts/{id}/schedules")
@requires(Role.operator)
async def create_schedule(request: web.Request) -> web.Response:
    body = await parse_body(request, ScheduleBody)
    host_id = request.match_info["id"]
    return reply(await request.app[SCHEDULES].create(actor(request), host_id, body), 201)


@routes.get("/api/v1/hosts/{id}/schedules/{sid}")
@requires(Role.viewer)
async def get_schedule(request: web.Request) -> web.Response:
    return reply(await request.app[SCHEDULES].get(*_ids(request)))


@routes.put("/api/v1/hosts/{id}/schedules/{sid}")
@requires(Role.operator)
async def put_schedule(request: web.Request) -> web.Response:
    body = await parse_body(request, ScheduleBody)
    host_id, sid = _ids(request)
    return reply(await request.app[SCHEDULES].update(actor(request), host_id, sid, body))


@routes.delete("/api/v1/hosts/{id}/schedules/{sid}")
@requires(Role.operator)
async def delete_schedule(request: web.Request) -> web.Response:
    host_id, sid = _ids(request)
    await request.app[SCHEDULES].delete(actor(request), host_id, sid)
    return web.Response(status=204)


@routes.post("/api/v1/hosts/{id}/schedules/{sid}/run")
@requires(Role.operator)
async def run_schedule(request: web.Request) -> web.Response:
    jobs = await request.app[JOBS].run_schedule(actor(request), *_ids(request))
    return reply({"jobs": jobs}, 202)
