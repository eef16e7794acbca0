"""Jobs: create for a host, list, get, cancel, and read logs page by page."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import JobBody
from rm_core.enums import JobKind, JobState, Role
from rm_server.api.common import actor, job_accepted, parse_body, query_enum, query_int, reply, requires
from rm_server.keys import JOBS, STORE

routes = web.RouteTableDef()


@routes.post("/api/v1/hosts/{id}/jobs")
@requires(Role.operator)
async def create_job(request: web.Request) -> web.Response:
    body = await parse_body(request, JobBody)
    job = await request.app[JOBS].new_job(actor(request), request.match_info["id"], body)
    return job_accepted(job)


@routes.get("/api/v1/jobs")
@requires(Role.viewer)
async def list_jobs(request: web.Request) -> web.Response:
    jobs = await request.app[STORE].jobs.list(
        host_id=request.query.get("host_id") or None, state=query_enum(request, "state", JobState),
        kind=query_enum(request, "kind", JobKind), limit=query_int(request, "limit", 100, 1, 1000),
        before=request.query.get("before") or None,
    )
    return reply({"jobs": jobs})


@routes.get("/api/v1/jobs/{id}")
@requires(Role.viewer)
async def get_job(request: web.Request) -> web.Response:
    return reply(await request.app[STORE].jobs.get(request.match_info["id"]))


@routes.post("/api/v1/jobs/{id}/cancel")
@requires(Role.operator)
async def cancel_job(request: web.Request) -> web.Response:
    job = await request.app[JOBS].cancel(actor(request), request.match_info["id"])
    return reply(job, 202)


@routes.get("/api/v1/jobs/{id}/logs")
@requires(Role.viewer)
async def job_logs(request: web.Request) -> web.Response:
    page = await request.app[STORE].jobs.logs(
        request.match_info["id"], query_int(request, "after_seq", 0, 0, 2**62),
        query_int(request, "limit", 1000, 1, 10_000),
    )
    return reply(page)
