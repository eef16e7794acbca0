"""Routes at the root: health and metrics (the installer is in api/install.py)."""

from __future__ import annotations

import hmac

from aiohttp import web

from rm_core.version import __version__
from rm_server.api.common import PUBLIC, reply, requires
from rm_server.api.doc import Raw, documented
from rm_server.errors import Unauthorized, Unavailable
from rm_server.keys import AGENTS, CONFIG, EVENTS, HOST_METRICS, METRICS, METRICS_TOKEN, STORE
from rm_server.security import hash_token

routes = web.RouteTableDef()


@routes.get("/healthz")
@requires(PUBLIC)
@documented("Liveness: the server answers and its database too",
            description="The database read is shared by the probes of one second; a failed read answers 503 "
                        "`database_unavailable`, and the next probe reads again.",
            errors=(503,),
            reply={"type": "object", "required": ["status", "version"],
                   "properties": {"status": {"const": "ok"}, "version": {"type": "string"}}})
async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].ping()
    except Exception as exc:  # a monitor needs "not healthy", not a 500 with a traceback in the log
        raise Unavailable(f"the database cannot be read: {type(exc).__name__}", code="database_unavailable") from None
    return reply({"status": "ok", "version": __version__})


@routes.get("/metrics")
@requires(PUBLIC)
@documented("Prometheus metrics",
            description="Needs `Authorization: Bearer` with the token in DATA_DIR/metrics-token (or an operator "
                        "session), unless the server runs with --public-metrics. Fleet totals, then per-host "
                        "series (`rm_host_*`, labelled `host_id`; `rm_host_info` carries the hostname), rebuilt "
                        "at most every 10 s. Sent gzip-compressed when the scraper accepts it.",
            reply=Raw("text/plain", "Prometheus text exposition format."), errors=(401,))
async def metrics(request: web.Request) -> web.Response:
    store = request.app[STORE]
    if not request.app[CONFIG].public_metrics:
        await _metrics_reader(request)
    hosts = {"pending": 0, "online": 0, "offline": 0} | await store.hosts.counts_by_status()
    agents = request.app[AGENTS]
    events = request.app[EVENTS]
    text = request.app[METRICS].render(
        hosts=hosts, jobs=await store.jobs.counts_by_state(), agent_ws=len(agents.connections),
        operator_ws=len(events.subscribers),
        queue_depths={"agent_send": sum(len(c.pending) for c in agents.connections.values()),
                      "operator_send": sum(s.queue.qsize() for s in events.subscribers)},
    )
    per_host = await request.app[HOST_METRICS].get()
    headers = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        # The per-host part (megabytes at 19k hosts) is compressed once per rebuild, not per scrape.
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=per_host.gzip_after(text.encode()), headers=headers)
    return web.Response(body=text.encode() + per_host.text(), headers=headers)  # kept packed only


async def _metrics_reader(request: web.Request) -> None:
    """Fleet size and job counts are not for anyone who can reach the port: the scraper
    sends DATA/metrics-token as its bearer token (or an operator its session)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("/metrics needs a bearer token: DATA/metrics-token, or an operator session "
                           "(or start the server with --public-metrics)")
    if hmac.compare_digest(token.encode(), request.app[METRICS_TOKEN].encode()):
        return
    store = request.app[STORE]
    if await store.operators.session_operator(hash_token(token), request.app[CONFIG].clock()) is None:
        raise Unauthorized("invalid metrics token or session")

