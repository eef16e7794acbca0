"""Restore drills of a source group: the policy (cron, sample, threshold), the last drill,
and run-now."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rm_core.enums import ActorKind, JobKind, Role
from rm_core.drills import Drill, DrillPolicy
from rm_core.jobs import Job
from rm_server.api.common import actor, job_accepted, parse_body, reply, requires
from rm_server.api.doc import Accepted, documented
from rm_server.keys import DRILLS, JOBS, STORE
from rm_server.store import NewJob

routes = web.RouteTableDef()

PATH = "/api/v1/hosts/{id}/source-groups/{sid}/drill"


async def _drill(request: web.Request) -> dict[str, Any]:
    store, host_id, group_id = request.app[STORE], request.match_info["id"], request.match_info["sid"]
    policy = await store.drills.get(host_id, group_id)
    return {"source_group_id": group_id, **policy.model_dump(), "last": await store.drills.last(group_id)}


@routes.get(PATH)
@requires(Role.viewer)
@documented("A source group's restore drill policy and its last drill", reply=Drill)
async def get_drill(request: web.Request) -> web.Response:
    return reply(await _drill(request))


@routes.put(PATH)
@requires(Role.operator)
@documented("Set a source group's restore drill policy",
            description="No `cron`: drills run only by hand. `max_age_hours`: a group whose last good drill is "
                        "older is a problem (one webhook, and again when it recovers).",
            body=DrillPolicy, reply=Drill,
            examples={"weekly": {"cron": "0 4 * * 0", "sample_files": 20, "sample_mb": 200, "max_age_hours": 192}})
async def put_drill(request: web.Request) -> web.Response:
    body = await parse_body(request, DrillPolicy)
    await request.app[DRILLS].set_policy(actor(request), request.match_info["id"], request.match_info["sid"], body)
    return reply(await _drill(request))


@routes.post(PATH + "/run")
@requires(Role.operator)
@documented("Run a restore drill of the group now", reply=Accepted(Job), status=202)
async def run_drill(request: web.Request) -> web.Response:
    store, host_id, group_id = request.app[STORE], request.match_info["id"], request.match_info["sid"]
    await store.schedules.group(host_id, group_id)
    op = actor(request)
    (job,) = await request.app[JOBS].create(op, [NewJob(host_id, JobKind.drill, ActorKind.user, op.id, None, group_id)])
    return job_accepted(job)
