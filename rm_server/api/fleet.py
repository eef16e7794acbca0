"""Fleet-wide changes: put one backup policy on many hosts at once."""

from __future__ import annotations

from aiohttp import web
from pydantic import TypeAdapter

from rm_core.fleet import FleetCrons, FleetPolicyBody, FleetPolicyResult, PolicyName
from rm_core.enums import Role
from rm_server.api.common import actor, parse_body, path_param, reply, requires
from rm_server.api.doc import documented
from rm_server.keys import FLEET, STORE

routes = web.RouteTableDef()
POLICY_NAME = TypeAdapter(PolicyName)


@routes.put("/api/v1/fleet/policies/{name}")
@requires(Role.operator)
@documented("Put one backup policy on many hosts",
            description="Upserts source group NAME and schedule NAME (backing up that group) on every host "
                        "`hosts` selects (every given filter must match; none: all hosts).",
            body=FleetPolicyBody, reply=FleetPolicyResult, path={"name": POLICY_NAME},
            examples={"all online": {"hosts": {"status": "online"}, "includes": ["/etc"], "cron": "0 2 * * *",
                                     "retention": {"keep_daily": 14}}})
async def put_policy(request: web.Request) -> web.Response:
    """Upsert source group NAME and schedule NAME (backing up that group) on every selected host."""
    body = await parse_body(request, FleetPolicyBody)
    name = path_param(request, "name", POLICY_NAME)
    result = await request.app[FLEET].apply_policy(actor(request), name, body)
    return reply(result)


@routes.get("/api/v1/fleet/crons")
@requires(Role.viewer)
@documented("Every host's cron schedules, grouped",
            description="One entry per (cron, timezone) with the ids of the hosts that have an enabled schedule "
                        "on it (manual and disabled schedules are left out). A console computes each host's next "
                        "run from it by its own clock; `schedule.updated` events carry a host's new `crons`.",
            reply=FleetCrons)
async def get_crons(request: web.Request) -> web.Response:
    return reply(FleetCrons(crons=await request.app[STORE].fleet.crons()))
