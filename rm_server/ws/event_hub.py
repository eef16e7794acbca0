"""Operator event fan-out: one queue per operator connection, bounded in frames and
bytes, so one slow operator never slows the others nor pins the server's memory, and
per-job log subscriptions with backlog + live tail. The socket route is in ws/events.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic_core import to_json

from rm_core.jobs import JobLogLine
from rm_core.log_frames import WireLine

# Live lines come as WireLine (already JSON-ready), backlog lines as JobLogLine models.
AnyLine = WireLine | JobLogLine
# job_id, the seq after which to start -> the stored lines, page by page (ws/events.py)
Backlog = Callable[[str, int], AsyncIterator[list[JobLogLine]]]


def _line_json(ln: AnyLine) -> dict[str, Any]:
    return ln.as_json() if isinstance(ln, WireLine) else ln.model_dump(mode="json")


# Frames whose newest one says all the older ones said: a host's state, a job's progress.
# While one waits in a subscriber's queue, a newer one for the same thing replaces it in
# place, so a reconnect storm (two host.updated per agent) costs a console one frame per
# host instead of closing it with 1008 for being slow.
_LATEST_WINS = {"host.updated": "id", "job.progress": "job_id"}


def _coalesce_key(type_: str, payload: Any) -> str | None:
    field = _LATEST_WINS.get(type_)
    if field is None:
        return None
    value = payload.get(field) if isinstance(payload, dict) else getattr(payload, field, None)
    return f"{type_}:{value}" if isinstance(value, str) else None


class Subscriber:
    """One operator connection: a queue bounded in frames *and* bytes, drained by its own writer.

    Bytes matter more than frames: one frame of log lines can be megabytes, and a reader
    that stops reading must not make the server hold hundreds of them."""

    def __init__(self, ws: web.WebSocketResponse, queue_size: int, queue_bytes: int = 8 * 1024 * 1024) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self.max_bytes = queue_bytes
        self.bytes = 0
        self._drained = asyncio.Event()
        # job_id -> last seq sent, or a list buffering live lines while the backlog loads
        self.jobs: dict[str, int] = {}
        self.pending: dict[str, list[AnyLine]] = {}
        # Bytes held in `pending`, counted in the same bound as the queue: a reader that does
        # not read while a big job's backlog loads held every live line (1.5 GB seen).
        self.pending_bytes = 0
        # Jobs whose buffered live lines were let go for that bound: they are in the
        # database (lines are published after they are stored), so the backlog reads on.
        self.spilled: set[str] = set()
        # Last seq sent per job, kept across unsubscribe: subscribing again resumes there
        # instead of queueing the whole backlog once more.
        self.sent: dict[str, int] = {}
        self.overflowed = False
        # coalescing key -> the newest frame for it; the queue holds the key in its place
        self.latest: dict[str, bytes] = {}
        self.on_drop: Callable[[], None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.waiting_for_room = False  # a backlog loader waits for the writer (tests watch it)

    def put(self, frame: bytes, key: str | None = None) -> None:
        if self.overflowed:
            return
        older = self.latest.get(key) if key is not None else None
        if key is not None and older is not None:  # still queued: the newer frame takes its place in line
            self.latest[key] = frame
            self.bytes += len(frame) - len(older)
            return
        if self.bytes + self.pending_bytes + len(frame) > self.max_bytes and self.pending_bytes:
            for job_id in list(self.pending):  # buffered lines are in the database: let them go first
                self.unbuffer(job_id)
                self.spilled.add(job_id)
        if self.bytes + len(frame) > self.max_bytes and self.bytes:
            self._overflow()
            return
        try:
            self.queue.put_nowait(frame if key is None else key)
        except asyncio.QueueFull:
            self._overflow()
            return
        if key is not None:
            self.latest[key] = frame
        self.bytes += len(frame)

    def _overflow(self) -> None:
        # Too slow to keep up: drop the connection rather than hold everyone else back.
        self.overflowed = True
        self.pending.clear()
        self.pending_bytes = 0
        self._drained.set()
        if self.on_drop is not None:
            self.on_drop()  # out of the fan-out now, not when the close handshake ends
        self.close(1008, b"too slow: event queue overflowed", wait=1.0)

    async def put_paced(self, frame: bytes) -> None:
        """A backlog frame: waits while the queue is half full, so loading a large log
        never needs more than the byte bound however slowly the reader reads."""
        while not self.overflowed and self.bytes and (
                self.bytes + len(frame) > self.max_bytes // 2 or self.queue.qsize() >= self.queue.maxsize // 2):
            self._drained.clear()
            self.waiting_for_room = True
            try:
                await self._drained.wait()
            finally:
                self.waiting_for_room = False
        self.put(frame)

    def close(self, code: int, message: bytes, wait: float = 5.0) -> asyncio.Task[None]:
        if self._closer is None:
            self._closer = asyncio.ensure_future(self._close(code, message, wait))
        return self._closer

    async def _close(self, code: int, message: bytes, wait: float) -> None:
        # A reader that does not read cannot take the close frame either: ws.close() would
        # wait on the drain forever. Cancelled after `wait`, aiohttp drops the transport.
        try:
            async with asyncio.timeout(wait):  # not wait_for: see rm_core/waiting.py
                await self.ws.close(code=code, message=message)
        except TimeoutError:
            pass

    async def closed(self) -> None:
        """Let a close begun elsewhere finish its handshake before the handler returns."""
        if self._closer is not None:
            await asyncio.wait([self._closer], timeout=5)

    def stop(self) -> None:
        self.overflowed = True
        self._drained.set()

    async def next_frame(self) -> bytes:
        item = await self.queue.get()
        frame = self.latest.pop(item) if isinstance(item, str) else item
        self.bytes = max(0, self.bytes - len(frame))
        self._drained.set()
        return frame

    def log_lines(self, job_id: str, lines: Sequence[AnyLine], frame: Callable[[list[AnyLine]], bytes]) -> None:
        if job_id in self.pending:
            if job_id in self.spilled:
                return
            size = _lines_size(lines)
            if self.bytes + self.pending_bytes + size > self.max_bytes:
                self.unbuffer(job_id)
                self.spilled.add(job_id)
                return
            self.pending[job_id].extend(lines)
            self.pending_bytes += size
            return
        last = self.jobs.get(job_id)
        if last is None:
            return
        fresh = [ln for ln in lines if ln.seq > last]
        if fresh:
            self.jobs[job_id] = self.sent[job_id] = fresh[-1].seq
            self.put(frame(fresh))

    def unbuffer(self, job_id: str) -> list[AnyLine]:
        """Let go of the live lines buffered for `job_id` (and their share of the bound)."""
        lines = self.pending.get(job_id, [])
        if lines:
            self.pending[job_id] = []
            self.pending_bytes = max(0, self.pending_bytes - _lines_size(lines))
        return lines


def _lines_size(lines: Sequence[AnyLine]) -> int:
    # The text and a line's bookkeeping (seq, ts, stream, the tuple): ~100 bytes each.
    return sum(len(ln.text) + 100 for ln in lines)


class EventHub:
    def __init__(self, clock: Callable[[], datetime], queue_size: int) -> None:
        self.clock = clock
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.per_account: dict[str, int] = {}  # operator id -> open events sockets
        # Replicas (services/relay.py): every frame published here also goes to the other
        # replicas' operators, and a job's new log lines are announced by job id and seq.
        self.forward: Callable[[bytes, str | None], None] | None = None
        self.forward_log: Callable[[str, int], None] | None = None
        # While no other replica has operators watching, `hold(type, payload, ts)` keeps an
        # event instead of its being forwarded, and says so (services/event_forwarding.py).
        self.hold: Callable[[str, Any, datetime], bool] | None = None
        # Called with True when the first operator here starts watching, False when the last stops.
        self.on_watching: Callable[[bool], None] | None = None
        # jobs whose lines another replica stored while a subscriber's backlog was loading
        self._stale: set[tuple[Subscriber, str]] = set()

    def _frame(self, type_: str, payload: Any, ts: datetime | None = None) -> bytes:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        return to_json({"type": type_, "ts": ts or self.clock(), "payload": payload})

    def join(self, sub: Subscriber) -> None:
        """An operator's events socket starts receiving."""
        self.subscribers.add(sub)
        if len(self.subscribers) == 1 and self.on_watching is not None:
            self.on_watching(True)

    def leave(self, sub: Subscriber) -> None:
        """It stops (closed, or dropped as too slow); again for the same one is nothing."""
        if sub not in self.subscribers:
            return
        self.subscribers.discard(sub)
        if not self.subscribers and self.on_watching is not None:
            self.on_watching(False)

    def publish(self, type_: str, payload: Any) -> None:
        if not self.subscribers and self.forward is None:
            return
        forward, ts = self.forward, self.clock()
        if self.hold is not None and self.hold(type_, payload, ts):
            forward = None  # held: no other replica has operators watching
            if not self.subscribers:
                return
        frame = self._frame(type_, payload, ts)
        key = _coalesce_key(type_, payload)
        if forward is not None:
            forward(frame, key)
        self.deliver(frame, key)

    def frame_of(self, type_: str, payload: Any, ts: datetime) -> tuple[bytes, str | None]:
        """A held event's frame (its own time) and coalescing key, as publish makes them."""
        return self._frame(type_, payload, ts), _coalesce_key(type_, payload)

    def deliver(self, frame: bytes, key: str | None) -> None:
        """A frame to this replica's operators (published here, or by another replica)."""
        for sub in list(self.subscribers):  # a slow one may leave during the loop
            sub.put(frame, key)

    async def catch_up(self, job_id: str, load: Backlog) -> None:
        """Another replica stored new lines of `job_id`: subscribers here read them from the
        database (the rows are the truth; the announcement carried only the job and seq)."""
        for sub in list(self.subscribers):
            if job_id in sub.pending:
                self._stale.add((sub, job_id))  # subscribe() reads again once its backlog is in
            elif job_id in sub.jobs:
                await self._read_on(sub, job_id, load)

    async def _read_on(self, sub: Subscriber, job_id: str, load: Backlog) -> None:
        def frame(fresh: list[AnyLine]) -> bytes:
            return self._frame("job.log", {"job_id": job_id, "lines": [_line_json(ln) for ln in fresh]})

        async for batch in load(job_id, sub.jobs.get(job_id, 0)):
            if sub.overflowed or job_id not in sub.jobs:
                return
            if batch:
                sub.log_lines(job_id, batch, frame)

    def publish_log(self, job_id: str, lines: Sequence[AnyLine]) -> None:
        if self.forward_log is not None and lines:
            self.forward_log(job_id, lines[-1].seq)
        def frame(fresh: list[AnyLine]) -> bytes:
            return self._frame("job.log", {"job_id": job_id, "lines": [_line_json(ln) for ln in fresh]})

        for sub in list(self.subscribers):  # a slow one may leave during the loop
            if job_id in sub.jobs or job_id in sub.pending:
                sub.log_lines(job_id, lines, frame)

    async def subscribe(self, sub: Subscriber, job_id: str, load_backlog: Backlog) -> None:
        """Backlog then live tail: live lines are buffered while the backlog loads, then
        merged by seq, so nothing is missed and nothing is sent twice."""
        if job_id in sub.jobs or job_id in sub.pending:
            return
        sub.pending[job_id] = []
        last = sub.sent.get(job_id, 0)
        try:
            while True:
                async for batch in load_backlog(job_id, last):
                    if sub.overflowed:
                        break
                    if batch:
                        last = sub.sent[job_id] = batch[-1].seq
                        await sub.put_paced(self._frame("job.log", {
                            "job_id": job_id, "lines": [_line_json(ln) for ln in batch], "backlog": True}))
                if job_id not in sub.spilled or sub.overflowed:
                    break
                # Live lines were let go while this loaded: they are stored, read on from `last`.
                sub.spilled.discard(job_id)
        finally:
            buffered = sub.unbuffer(job_id)
            sub.pending.pop(job_id, None)
            sub.spilled.discard(job_id)
            stale = (sub, job_id) in self._stale
            self._stale.discard((sub, job_id))
        sub.jobs[job_id] = last
        if buffered:
            sub.log_lines(job_id, buffered, lambda fresh: self._frame(
                "job.log", {"job_id": job_id, "lines": [_line_json(ln) for ln in fresh]}))
        if stale:
            await self._read_on(sub, job_id, load_backlog)

    async def close_all(self) -> None:
        closing = [sub.close(1001, b"server shutting down") for sub in list(self.subscribers)]
        if closing:
            await asyncio.wait(closing, timeout=5)
