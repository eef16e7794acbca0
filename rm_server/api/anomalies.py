"""A host's backup anomalies and their acknowledgement, a source group's backup history (the
console's plots), and the fleet's repository growth."""

from __future__ import annotations

from aiohttp import web

from rm_core.enums import Role
from rm_core.history import AcknowledgeBody, Anomaly, FleetGrowth, GroupHistory
from rm_server.api.common import actor, parse_body, query_int, reply, requires
from rm_server.api.doc import Listing, documented, q_int
from rm_server.keys import ANOMALIES

routes = web.RouteTableDef()


@routes.get("/api/v1/hosts/{id}/anomalies")
@requires(Role.viewer)
@documented("The host's backup anomalies, newest first", reply=Listing("anomalies", Anomaly),
            description="A backup whose restic summary lies far outside its source group's history (files "
                        "changed, bytes added, files gone; the group's `anomaly` policy) ends `warning` with the "
                        "reason and raises `backup.anomaly`. It stays open, and the host a problem, until an "
                        "operator acknowledges it.",
            query=(q_int("open", 0, 1, 0, "1: only those not acknowledged yet"),
                   q_int("limit", 1, 1000, 100, "at most this many")))
async def list_anomalies(request: web.Request) -> web.Response:
    found = await request.app[ANOMALIES].of_host(request.match_info["id"], query_int(request, "open", 0, 0, 1) == 1,
                                                 query_int(request, "limit", 100, 1, 1000))
    return reply({"anomalies": found})


@routes.post("/api/v1/hosts/{id}/anomalies/acknowledge")
@requires(Role.operator)
@documented("Acknowledge the host's open anomalies",
            description="Those named by `ids`, or those of `source_group_id`, or (neither) all of them. A group "
                        "whose policy has `pause_forget` runs forget again once none of its anomalies is open. "
                        "Answers the anomalies it closed (none: an empty list).",
            body=AcknowledgeBody, reply=Listing("anomalies", Anomaly),
            examples={"all": {}, "with a note": {"note": "quarterly archive moved in; not an attack"}})
async def acknowledge(request: web.Request) -> web.Response:
    body = await parse_body(request, AcknowledgeBody)
    done = await request.app[ANOMALIES].acknowledge(actor(request), request.match_info["id"], body)
    return reply({"anomalies": done})


@routes.get("/api/v1/hosts/{id}/source-groups/{sid}/history")
@requires(Role.viewer)
@documented("A source group's last successful backups and its anomaly lines",
            description="Oldest first: duration, bytes added, files changed (new + changed), files seen, the "
                        "repository's size after each, and the anomaly a backup raised. `lines`: per measure, the "
                        "value past which the next backup is an anomaly (absent below 3 backups or with the "
                        "tell off).",
            reply=GroupHistory, query=(q_int("limit", 1, 200, 30, "at most this many backups"),))
async def group_history(request: web.Request) -> web.Response:
    history = await request.app[ANOMALIES].history(request.match_info["id"], request.match_info["sid"],
                                                   query_int(request, "limit", 30, 1, 200))
    return reply(history)


@routes.get("/api/v1/fleet/growth")
@requires(Role.viewer)
@documented("Repository growth per host, fastest growing first",
            description="From the repository sizes agents report after each repository-changing job: the newest "
                        "size, the size at the start of the window, and the size at the end of each day.",
            reply=FleetGrowth, query=(q_int("days", 1, 365, 30, "the window, in days"),
                                      q_int("limit", 1, 100_000, 100, "at most this many hosts")))
async def fleet_growth(request: web.Request) -> web.Response:
    return reply(await request.app[ANOMALIES].growth(query_int(request, "days", 30, 1, 365),
                                                     query_int(request, "limit", 100, 1, 100_000)))
