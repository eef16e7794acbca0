"""The operator events WebSocket route: subscribe/unsubscribe to job logs; every event
reaches the connection through its Subscriber queue (ws/event_hub.py)."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import WSMsgType, web

from rm_core.enums import Role
from rm_server.api.common import OPERATOR_KEY, requires, websocket_or_400
from rm_server.api.doc import documented
from rm_server.errors import TooManyRequests
from rm_server.keys import CONFIG, EVENTS, STORE
from rm_server.services.relay import log_pages
from rm_server.store import NotFound, Store
from rm_server.ws.event_hub import EventHub, Subscriber

log = logging.getLogger("rm_server.events")


@requires(Role.viewer)
@documented("Operator events: host, job, schedule and audit changes as they happen, and live job logs",
            description="WebSocket. Frames `{type, ts, payload}`; send `{\"type\": \"subscribe\", \"job_id\": …}` "
                        "for a job's log backlog and live lines. See docs/protocol.md, Operator events.",
            websocket=True, errors=(429,))
async def events_ws(request: web.Request) -> web.WebSocketResponse:
    ws = websocket_or_400(request, web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=64 * 1024))
    hub = request.app[EVENTS]
    store = request.app[STORE]
    cfg = request.app[CONFIG]
    account = request[OPERATOR_KEY].id
    if hub.per_account.get(account, 0) >= cfg.max_events_per_account:
        raise TooManyRequests(f"this account already has {cfg.max_events_per_account} events sockets open; "
                              "close one first", {"limit": cfg.max_events_per_account})
    if sum(hub.per_account.values()) >= cfg.max_events_sockets:
        raise TooManyRequests(f"the server already has {cfg.max_events_sockets} events sockets open; "
                              "try again later", {"limit": cfg.max_events_sockets})
    hub.per_account[account] = hub.per_account.get(account, 0) + 1
    try:
        await ws.prepare(request)
        sub = Subscriber(ws, cfg.operator_queue_size, cfg.operator_queue_bytes)
        sub.on_drop = lambda: hub.leave(sub)
        hub.join(sub)
        await _serve(hub, store, sub, ws, request[OPERATOR_KEY].username)
    finally:
        left = hub.per_account.pop(account, 1) - 1
        if left > 0:
            hub.per_account[account] = left
    return ws


async def _serve(hub: EventHub, store: Store, sub: Subscriber, ws: web.WebSocketResponse, who: str) -> None:
    backlog = log_pages(store)

    async def writer() -> None:
        try:
            while True:
                frame = await sub.next_frame()
                await ws.send_str(frame.decode())
        finally:
            sub.stop()  # a backlog waiting for room must not wait for a writer that is gone

    writer_task = asyncio.create_task(writer())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
                kind, job_id = data.get("type"), data.get("job_id")
            except (ValueError, AttributeError):
                sub.put(hub._frame("error", {"code": "malformed", "message": "frames must be JSON objects"}))
                continue
            if kind == "subscribe" and isinstance(job_id, str):
                try:
                    await store.jobs.get(job_id)
                except NotFound:
                    sub.put(hub._frame("error", {"code": "not_found", "message": f"job {job_id!r} not found"}))
                    continue
                await hub.subscribe(sub, job_id, backlog)
            elif kind == "unsubscribe" and isinstance(job_id, str):
                sub.jobs.pop(job_id, None)
            else:
                sub.put(hub._frame("error", {"code": "unknown_type",
                                              "message": "send {type: subscribe|unsubscribe, job_id}"}))
            if writer_task.done():
                break
    finally:
        hub.leave(sub)
        writer_task.cancel()
        try:
            await writer_task
        except asyncio.CancelledError:
            pass
        except ConnectionError as exc:  # the client went away with frames still to send: its choice
            log.info("events socket of %s closed by the client with %d bytes unsent (%s)",
                     who, sub.bytes, exc or type(exc).__name__)
        await sub.closed()
