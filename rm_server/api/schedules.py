"""Source groups and schedules of a host; the schedule service pushes each change to the agent."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import Schedule, ScheduleBody, ScheduleList, SourceGroup, SourceGroupBody
from rm_core.enums import JobKind, Role
from rm_core.jobs import Job, JobBody
from rm_server.api.common import actor, job_accepted, parse_body, reply, requires
from rm_server.api.doc import Accepted, Listing, documented
from rm_server.keys import JOBS, SCHEDULES, STORE

routes = web.RouteTableDef()

GROUP_EXAMPLES = {"etc": {"name": "etc", "includes": ["/etc"], "excludes": ["/etc/ssl/private"],
                          "retention": {"keep_daily": 7, "keep_weekly": 4}}}
SCHEDULE_EXAMPLES = {"nightly": {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                                 "source_group_ids": ["01JD3QK9Z8X2M4N6P7R8S9T0VW"]},
                     "manual": {"name": "on demand", "manual": True, "source_group_ids": ["01JD3QK9Z8X2M4N6P7R8S9T0VW"]}}


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["id"], request.match_info["sid"]


@routes.get("/api/v1/hosts/{id}/source-groups")
@requires(Role.viewer)
@documented("The host's source groups", reply=Listing("source_groups", SourceGroup))
async def list_groups(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    await request.app[STORE].hosts.get(host_id)
    return reply({"source_groups": await request.app[STORE].schedules.groups(host_id)})


@routes.post("/api/v1/hosts/{id}/source-groups")
@requires(Role.operator)
@documented("Create a source group (what to back up, and how long to keep it)",
            description="The name is unique per host (409). The change bumps the host's schedule version and "
                        "is pushed to the agent.",
            body=SourceGroupBody, reply=SourceGroup, status=201, errors=(409,), examples=GROUP_EXAMPLES)
async def create_group(request: web.Request) -> web.Response:
    body = await parse_body(request, SourceGroupBody)
    host_id = request.match_info["id"]
    return reply(await request.app[SCHEDULES].create_group(actor(request), host_id, body), 201)


@routes.get("/api/v1/hosts/{id}/source-groups/{sid}")
@requires(Role.viewer)
@documented("One source group", reply=SourceGroup)
async def get_group(request: web.Request) -> web.Response:
    return reply(await request.app[STORE].schedules.group(*_ids(request)))


@routes.put("/api/v1/hosts/{id}/source-groups/{sid}")
@requires(Role.operator)
@documented("Replace a source group", body=SourceGroupBody, reply=SourceGroup, errors=(409,),
            examples=GROUP_EXAMPLES)
async def put_group(request: web.Request) -> web.Response:
    body = await parse_body(request, SourceGroupBody)
    host_id, gid = _ids(request)
    return reply(await request.app[SCHEDULES].update_group(actor(request), host_id, gid, body))


@routes.delete("/api/v1/hosts/{id}/source-groups/{sid}")
@requires(Role.operator)
@documented("Delete a source group", description="409 while a schedule uses it; `details.schedules` names them.",
            reply=None, status=204, errors=(409,))
async def delete_group(request: web.Request) -> web.Response:
    host_id, gid = _ids(request)
    await request.app[SCHEDULES].delete_group(actor(request), host_id, gid)
    return web.Response(status=204)


@routes.post("/api/v1/hosts/{id}/source-groups/{sid}/run")
@requires(Role.operator)
@documented("Back up this source group now", reply=Accepted(Job), status=202)
async def run_group(request: web.Request) -> web.Response:
    host_id, gid = _ids(request)
    job = await request.app[JOBS].new_job(actor(request), host_id, JobBody(kind=JobKind.backup, source_group_id=gid))
    return job_accepted(job)


@routes.get("/api/v1/hosts/{id}/schedules")
@requires(Role.viewer)
@documented("The host's schedules, with the version issued and the version the agent applied",
            reply=ScheduleList)
async def list_schedules(request: web.Request) -> web.Response:
    return reply(await request.app[SCHEDULES].for_host(request.match_info["id"]))


@routes.post("/api/v1/hosts/{id}/schedules")
@requires(Role.operator)
@documented("Create a schedule", description="`cron` (5 fields, in `timezone`) is required unless `manual` is "
                                             "true; a manual schedule has no cron and runs only by run-now.",
            body=ScheduleBody, reply=Schedule, status=201, examples=SCHEDULE_EXAMPLES)
async def create_schedule(request: web.Request) -> web.Response:
    body = await parse_body(request, ScheduleBody)
    host_id = request.match_info["id"]
    return reply(await request.app[SCHEDULES].create(actor(request), host_id, body), 201)


@routes.get("/api/v1/hosts/{id}/schedules/{sid}")
@requires(Role.viewer)
@documented("One schedule", reply=Schedule)
async def get_schedule(request: web.Request) -> web.Response:
    return reply(await request.app[SCHEDULES].get(*_ids(request)))


@routes.put("/api/v1/hosts/{id}/schedules/{sid}")
@requires(Role.operator)
@documented("Replace a schedule", body=ScheduleBody, reply=Schedule, examples=SCHEDULE_EXAMPLES)
async def put_schedule(request: web.Request) -> web.Response:
    body = await parse_body(request, ScheduleBody)
    host_id, sid = _ids(request)
    return reply(await request.app[SCHEDULES].update(actor(request), host_id, sid, body))


@routes.delete("/api/v1/hosts/{id}/schedules/{sid}")
@requires(Role.operator)
@documented("Delete a schedule", reply=None, status=204)
async def delete_schedule(request: web.Request) -> web.Response:
    host_id, sid = _ids(request)
    await request.app[SCHEDULES].delete(actor(request), host_id, sid)
    return web.Response(status=204)


@routes.post("/api/v1/hosts/{id}/schedules/{sid}/run")
@requires(Role.operator)
@documented("Run a schedule now: one backup job per source group it names", reply=Listing("jobs", Job),
            status=202)
async def run_schedule(request: web.Request) -> web.Response:
    jobs = await request.app[JOBS].run_schedule(actor(request), *_ids(request))
    return reply({"jobs": jobs}, 202)
