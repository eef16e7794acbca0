"""Operator event fan-out: one bounded queue per operator connection, so one slow operator
never slows the others, and per-job log subscriptions with backlog + live tail.
The socket route is in ws/events.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic_core import to_json

from rm_core.protocol import LogLine


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
