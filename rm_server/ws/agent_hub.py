"""The live agent connections: newest connection wins, a bounded send buffer per agent,
and the sweep's view of who went silent. The socket route itself is in ws/agents.py."""

from __future__ import annotations

import asyncio
import logging
import socket
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from rm_core import protocol as p

log = logging.getLogger("rm_server.agents")

class AgentConnection:
    """One live agent socket with a bounded send buffer.

    A flush task exists only while frames wait: at fleet scale a permanent writer task and
    queue per agent cost more memory than anything else the server keeps per connection."""

    __slots__ = ("host_id", "ws", "sock", "last_seen", "seen_stored", "limit", "pending", "flusher", "closing",
                 "closer", "features", "welcomed")

    def __init__(self, host_id: str, ws: web.WebSocketResponse, now: datetime, limit: int, sock: Any = None):
        self.host_id = host_id
        self.ws = ws
        self.sock = sock  # the TCP socket under ws, for corked()
        self.last_seen = now
        self.seen_stored = now  # last_seen as the database has it (hello wrote it)
        self.limit = limit
        self.pending: deque[str] = deque()
        self.flusher: asyncio.Task[None] | None = None
        self.closing = False
        self.closer: asyncio.Future[bool] | None = None
        # announced in hello: messages of a feature go only to agents that know them
        self.features: frozenset[str] = frozenset()
        # The connection is reachable (hub.connections) while its hello is still being
        # recorded; anything sent then (a query, a cancel) waits here until hello.ok has gone,
        # since an agent takes any other first frame for a broken handshake and reconnects.
        self.welcomed = False

    def send(self, payload: p.Payload, ref: str | None = None) -> bool:
        """Buffer a message; an agent that lets the buffer fill cannot keep up and is dropped."""
        return self.send_frame(p.encode(p.message(payload, ref)))

    def send_frame(self, frame: str) -> bool:
        if self.closing:
            return False
        if len(self.pending) >= self.limit:
            log.warning("agent %s send buffer full; closing its connection", self.host_id)
            self.close(1013, "send queue overflowed")
            return False
        if not self.welcomed:
            self.pending.append(frame)
            return True
        idle = self.flusher is None or self.flusher.done()
        if idle and not self.pending:
            self._send_now(frame)
            return True
        self.pending.append(frame)
        if idle:
            self.flusher = asyncio.ensure_future(self._flush())
        return True

    def welcome(self, payload: p.Payload, ref: str | None = None) -> None:
        """Send hello.ok first, then whatever waited for it, the way every frame is sent."""
        self.welcomed = True
        held, self.pending = self.pending, deque()
        self.send(payload, ref)
        for frame in held:
            self.send_frame(frame)

    def _send_now(self, frame: str) -> None:
        """Write the frame without a task: an uncompressed send only suspends when the socket
        applies back-pressure. A task per frame made a fleet push schedule 19k of them, all
        run in one loop iteration; now only a frame that must wait gets one."""
        coro = self.ws.send_str(frame)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        except (ConnectionResetError, RuntimeError):
            self.close(1011, "send failed")
            return
        self.flusher = asyncio.ensure_future(self._flush(_resume(coro, waiting)))

    @contextmanager
    def corked(self) -> Iterator[None]:
        """Frames sent inside leave as one TCP segment when the block ends (TCP_CORK).

        The answer to a hello is three frames; on loopback or a LAN each send() that
        transmits costs the server ~60 µs in the kernel, and in a reconnect storm those sends
        were a fifth of the server's time. Corked, the three cost one transmit."""
        sock = self.sock
        try:
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        except OSError:  # closed meanwhile, or not TCP: frames just go out one by one
            sock = None
        try:
            yield
        finally:
            if sock is not None:
                with suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closing:
            self.closing = True
            self.pending.clear()
            self.closer = asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()))

    async def _flush(self, started: Awaitable[None] | None = None) -> None:
        try:
            if started is not None:
                await started  # a send that began in _send_now and had to wait
            while self.pending:
                await self.ws.send_str(self.pending.popleft())
        except (ConnectionResetError, RuntimeError):
            self.close(1011, "send failed")

    async def stop(self) -> None:
        """End the connection; a close begun elsewhere finishes its handshake before the
        handler returns, or the peer would see the socket drop (1006) instead of the code."""
        self.closing = True
        if self.flusher is not None:
            self.flusher.cancel()
        if self.closer is not None:
            await asyncio.wait([self.closer], timeout=5)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """Finish a coroutine already started by hand: hand its awaited future to the task
    driving us, pass results and exceptions (a cancel) back into it."""
    while True:
        try:
            value = yield waiting
        except BaseException as exc:
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting = coro.send(value)
        except StopIteration:
            return


class AgentHub:
    def __init__(self) -> None:
        self.connections: dict[str, AgentConnection] = {}
        self.pending = 0  # upgraded sockets still in their hello phase
        # called with each connection that ended, whatever ended it (live queries fail at once)
        self.closed_listeners: list[Callable[[AgentConnection], None]] = []

    def closed(self, conn: AgentConnection) -> None:
        for listener in self.closed_listeners:
            listener(conn)

    def get(self, host_id: str) -> AgentConnection | None:
        conn = self.connections.get(host_id)
        return None if conn is None or conn.closing else conn

    def send(self, host_id: str, payload: p.Payload) -> bool:
        conn = self.get(host_id)
        return conn.send(payload) if conn else False

    def unflushed_heartbeats(self) -> list[tuple[AgentConnection, datetime]]:
        """Connections whose last_seen moved since the database last got it."""
        return [(c, c.last_seen) for c in self.connections.values() if c.last_seen != c.seen_stored]

    def drop_silent(self, now: datetime, offline_after: float) -> list[AgentConnection]:
        """Close and forget connections silent for longer than `offline_after` seconds."""
        cutoff = now - timedelta(seconds=offline_after)  # one comparison per connection: 19k of them
        silent = [c for c in self.connections.values() if c.last_seen < cutoff]
        for conn in silent:
            log.info("agent %s silent for %.0fs; marking offline", conn.host_id, offline_after)
            if self.connections.get(conn.host_id) is conn:
                del self.connections[conn.host_id]
            conn.close(1001, "heartbeat timeout")
        return silent

    def disconnect(self, host_id: str, code: int, reason: str) -> None:
        """Drop a host's connection without it counting as the host going offline."""
        conn = self.connections.pop(host_id, None)
        if conn is not None:
            conn.close(code, reason)

    async def close_all(self) -> None:
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(1001, "server shutting down")
        closing = [c.closer for c in conns if c.closer is not None]
        if closing:
            await asyncio.wait(closing, timeout=5)
