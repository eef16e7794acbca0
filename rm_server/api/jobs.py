"""Jobs: create for a host, list, get, cancel, and read logs page by page."""

from __future__ import annotations

from aiohttp import web

from rm_core.enums import JobKind, JobState, Role
from rm_core.jobs import Job, JobBody, JobLogPage
from rm_server.api.common import OPERATOR_KEY, actor, job_accepted, parse_body, query_enum, query_int, reply, requires
from rm_server.api.doc import Accepted, Listing, documented, q_enum, q_int, q_str
from rm_server.errors import Forbidden
from rm_server.keys import JOBS, STORE

routes = web.RouteTableDef()


@routes.post("/api/v1/hosts/{id}/jobs")
@requires(Role.operator)
@documented(
    "Start a job on the host",
    description="What each kind needs besides `kind`: `backup` needs `source_group_id`; `forget` applies the "
                "retention of every source group (or of `source_group_id` only); `check` takes "
                "`read_data_subset` (`10%` or `1/5`); `unlock` takes `remove_all`; `restore` needs "
                "`snapshot_id` (8-64 hex digits or `latest`) and `target` (an absolute directory on the host) and "
                "takes `paths` (restore only these; none: everything); `init`, `prune`, `stats` and `snapshots` "
                "need nothing. `copy` needs `source_group_id`: `restic copy` of that group's snapshots (by its "
                "tag) from the primary into the copy repository (PUT /api/v1/hosts/{id}/repo/copy). `repo: "
                "\"copy\"` points `init`, `forget`, `prune`, `check`, `unlock`, `drill`, `snapshots` and `stats` at "
                "the copy repository instead of the primary (409 when the host has no copy repository, or "
                "`agent_too_old` for an agent without the `copy` feature). Every kind takes `limit_upload_kbps`, `limit_download_kbps` (override the host's "
                "caps) and `timeout_seconds`. The job is dispatched at once when the host is online, else "
                "when it connects. The same fields, without `kind` and `source_group_id`, are the job's "
                "`params` and what the agent gets in `command.run` (docs/protocol.md).",
    body=JobBody, reply=Accepted(Job), status=202, errors=(409,),
    examples={"backup": {"kind": "backup", "source_group_id": "01JD3QK9Z8X2M4N6P7R8S9T0VW"},
              "restore": {"kind": "restore", "snapshot_id": "4f2a9c1e", "paths": ["/etc/nginx"],
                          "target": "/var/tmp/restore"},
              "check": {"kind": "check", "read_data_subset": "10%"},
              "copy": {"kind": "copy", "source_group_id": "01JD3QK9Z8X2M4N6P7R8S9T0VW"},
              "forget on the copy": {"kind": "forget", "repo": "copy"},
              "unlock": {"kind": "unlock", "remove_all": True}})
async def create_job(request: web.Request) -> web.Response:
    body = await parse_body(request, JobBody)
    if body.from_host_id and request[OPERATOR_KEY].role != Role.admin:
        raise Forbidden("restoring another host's snapshot needs the admin role: it hands that host's repository "
                        "credentials to this one for the job", {"field": "from_host_id"})
    job = await request.app[JOBS].new_job(actor(request), request.match_info["id"], body)
    return job_accepted(job)


@routes.get("/api/v1/jobs")
@requires(Role.viewer)
@documented("List jobs, newest first", reply=Listing("jobs", Job), query=(
    q_str("host_id", "only this host's jobs"), q_enum("state", JobState, "only jobs in this state"),
    q_enum("kind", JobKind, "only jobs of this kind"), q_int("limit", 1, 1000, 100, "at most this many jobs"),
    q_str("before", "the page before this job id"),
))
async def list_jobs(request: web.Request) -> web.Response:
    jobs = await request.app[STORE].jobs.page(
        host_id=request.query.get("host_id") or None, state=query_enum(request, "state", JobState),
        kind=query_enum(request, "kind", JobKind), limit=query_int(request, "limit", 100, 1, 1000),
        before=request.query.get("before") or None,
    )
    return reply({"jobs": jobs})


@routes.get("/api/v1/jobs/{id}")
@requires(Role.viewer)
@documented("One job", reply=Job)
async def get_job(request: web.Request) -> web.Response:
    return reply(await request.app[STORE].jobs.get(request.match_info["id"]))


@routes.post("/api/v1/jobs/{id}/cancel")
@requires(Role.operator)
@documented("Cancel a job", description="A queued job ends at once; a running one when its agent stops "
                                        "restic (which first ends its uploads in flight: up to the agent's "
                                        "grace, 30 s by default). Meanwhile the job says `cancel_requested: "
                                        "true`, in this reply and in a `job.updated` event. 409 when the job "
                                        "already ended.",
            reply=Job, status=202, errors=(409,))
async def cancel_job(request: web.Request) -> web.Response:
    job = await request.app[JOBS].cancel(actor(request), request.match_info["id"])
    return reply(job, 202)


@routes.get("/api/v1/jobs/{id}/logs")
@requires(Role.viewer)
@documented("A page of a job's log", description="Pass the reply's `next_seq` as `after_seq` to read on; "
                                                 "`done` is true once the job ended and no line is left.",
            reply=JobLogPage, query=(q_int("after_seq", 0, 2**62, 0, "lines after this seq"),
                                     q_int("limit", 1, 10_000, 1000, "at most this many lines")))
async def job_logs(request: web.Request) -> web.Response:
    page = await request.app[STORE].jobs.logs(
        request.match_info["id"], query_int(request, "after_seq", 0, 0, 2**62),
        query_int(request, "limit", 1000, 1, 10_000),
    )
    return reply(page)
