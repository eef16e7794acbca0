"""Routes at the root: health and metrics (the installer is in api/install.py)."""

from __future__ import annotations

from aiohttp import web

from rm_core.version import __version__
from rm_server.api.common import PUBLIC, reply, requires
from rm_server.keys import AGENTS, EVENTS, METRICS, STORE

routes = web.RouteTableDef()


@routes.get("/healthz")
@requires(PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    await request.app[STORE].ping()
    return reply({"status": "ok", "version": __version__})


@routes.get("/metrics")
@requires(PUBLIC)
async def metrics(request: web.Request) -> web.Response:
    store = request.app[STORE]
    hosts = {"pending": 0, "online": 0, "offline": 0} | await store.hosts.counts_by_status()
    agents = request.app[AGENTS]
    events = request.app[EVENTS]
    text = request.app[METRICS].render(
        hosts=hosts, jobs=await store.jobs.counts_by_state(), agent_ws=len(agents.connections),
        operator_ws=len(events.subscribers),
        queue_depths={"agent_send": sum(len(c.pending) for c in agents.connections.values()),
                      "operator_send": sum(s.queue.qsize() for s in events.subscribers)},
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")
