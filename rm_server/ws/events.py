"""The operator events WebSocket route: subscribe/unsubscribe to job logs; every event
reaches the connection through its Subscriber queue (ws/event_hub.py)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from rm_core.enums import Role
from rm_server.api.common import requires
from rm_server.keys import CONFIG, EVENTS, STORE
from rm_server.store import NotFound
from rm_server.ws.event_hub import Subscriber


@requires(Role.viewer)
async def events_ws(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[EVENTS]
    store = request.app[STORE]
    ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=64 * 1024)
    await ws.prepare(request)
    sub = Subscriber(ws, request.app[CONFIG].operator_queue_size)
    hub.subscribers.add(sub)

    async def backlog(job_id: str):
        after = 0
        while True:
            page = await store.jobs.logs(job_id, after, 1000)
            yield page.lines
            if not page.lines:
                return
            after = page.next_seq

    async def writer() -> None:
        while True:
            frame = await sub.queue.get()
            await ws.send_str(frame.decode())

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
        hub.subscribers.discard(sub)
        writer_task.cancel()
        try:
            await writer_task
        except (asyncio.CancelledError, ConnectionResetError):
            pass
        await sub.closed()
    return ws
