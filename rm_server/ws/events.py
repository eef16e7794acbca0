"""The operator events WebSocket: every domain change fanned out without one slow
operator slowing the others, plus per-job log subscriptions with backlog + live tail."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import BaseModel
from pydantic_core import to_json

from rm_core.protocol import LogLine
from rm_core.enums import Role
from rm_server.api.common import requires
from rm_server.keys import CONFIG, EVENTS, STORE
from rm_server.store import NotFound

log = logging.getLogger("rm_server.events")


class Subscriber:
    """One operator connection: a bounded queue drained by its own writer."""

    def __init__(self, ws: web.WebSocketResponse, queue_size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        # job_id -> last seq sent, or a list buffering live lines while the backlog loads
        self.jobs: dict[str, int] = {}
        self.pending: dict[str, list[LogLine]] = {}
        self.overflowed = False
        self._closer: asyncio.Task | None = None

    def put(self, frame: bytes) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            # Too slow to keep up: drop the connection rather than hold everyone else back.
            self.overflowed = True
            self.close(1008, b"too slow: event queue overflowed")

    def close(self, code: int, message: bytes) -> asyncio.Future:
        if self._closer is None:
            self._closer = asyncio.ensure_future(self.ws.close(code=code, message=message))
        return self._closer

    async def closed(self) -> None:
        """Let a close begun elsewhere finish its handshake before the handler returns."""
        if self._closer is not None:
            await asyncio.wait([self._closer], timeout=5)

    def log_lines(self, job_id: str, lines: list[LogLine], frame: Callable[[list[LogLine]], bytes]) -> None:
        if job_id in self.pending:
            self.pending[job_id].extend(lines)
            return
        last = self.jobs.get(job_id)
        if last is None:
            return
        fresh = [ln for ln in lines if ln.seq > last]
        if fresh:
            self.jobs[job_id] = fresh[-1].seq
            self.put(frame(fresh))


class EventHub:
    def __init__(self, clock: Callable[[], datetime], queue_size: int) -> None:
        self.clock = clock
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()

    def _frame(self, type_: str, payload: Any) -> bytes:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        return to_json({"type": type_, "ts": self.clock(), "payload": payload})

    def publish(self, type_: str, payload: Any) -> None:
        if not self.subscribers:
            return
        frame = self._frame(type_, payload)
        for sub in self.subscribers:
            sub.put(frame)

    def publish_log(self, job_id: str, lines: list[LogLine]) -> None:
        def frame(fresh: list[LogLine]) -> bytes:
            return self._frame("job.log", {"job_id": job_id, "lines": [ln.model_dump(mode="json") for ln in fresh]})

        for sub in self.subscribers:
            if job_id in sub.jobs or job_id in sub.pending:
                sub.log_lines(job_id, lines, frame)

    async def subscribe(self, sub: Subscriber, job_id: str, load_backlog) -> None:
        """Backlog then live tail: live lines are buffered while the backlog loads, then
        merged by seq, so nothing is missed and nothing is sent twice."""
        if job_id in sub.jobs or job_id in sub.pending:
            return
        sub.pending[job_id] = []
        last = 0
        try:
            async for batch in load_backlog(job_id):
                if batch:
                    last = batch[-1].seq
                    sub.put(self._frame("job.log", {"job_id": job_id, "lines": [ln.model_dump(mode="json") for ln in batch], "backlog": True}))
        finally:
            buffered = sub.pending.pop(job_id, [])
        sub.jobs[job_id] = last
        if buffered:
            sub.log_lines(job_id, buffered, lambda fresh: self._frame(
                "job.log", {"job_id": job_id, "lines": [ln.model_dump(mode="json") for ln in fresh]}))

    async def close_all(self) -> None:
        closing = [sub.close(1001, b"server shutting down") for sub in list(self.subscribers)]
        if closing:
            await asyncio.wait(closing, timeout=5)


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
