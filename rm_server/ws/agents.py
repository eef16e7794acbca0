"""The agent WebSocket hub: hello phase with deadline, version gate, newest connection
wins, a bounded send queue per agent, a handler registry by message type, the sweeper."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from rm_core import protocol as p
from rm_core.version import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, __version__
from rm_server.api.common import AGENT, HOST_KEY, requires
from rm_server.errors import Unavailable
from rm_server.keys import AGENTS, CONFIG, SERVICES, STORE

log = logging.getLogger("rm_server.agents")

MessageHandler = Callable[["AgentConnection", p.Envelope], Awaitable[None]]


class AgentConnection:
    """One live agent socket with a bounded send buffer.

    A flush task exists only while frames wait: at fleet scale a permanent writer task and
    queue per agent cost more memory than anything else the server keeps per connection."""

    __slots__ = ("host_id", "ws", "last_seen", "seen_stored", "limit", "pending", "flusher", "closing", "closer")

    def __init__(self, host_id: str, ws: web.WebSocketResponse, now: datetime, limit: int):
        self.host_id = host_id
        self.ws = ws
        self.last_seen = now
        self.seen_stored = now  # last_seen as the database has it (hello wrote it)
        self.limit = limit
        self.pending: deque[str] = deque()
        self.flusher: asyncio.Task | None = None
        self.closing = False
        self.closer: asyncio.Future | None = None

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
        self.pending.append(frame)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.ensure_future(self._flush())
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closing:
            self.closing = True
            self.pending.clear()
            self.closer = asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()))

    async def _flush(self) -> None:
        try:
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


class AgentHub:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.connections: dict[str, AgentConnection] = {}
        self.handlers: dict[str, MessageHandler] = {}
        self.pending = 0  # upgraded sockets still in their hello phase

    def register(self, type_: str, handler: MessageHandler) -> None:
        self.handlers[type_] = handler

    def get(self, host_id: str) -> AgentConnection | None:
        conn = self.connections.get(host_id)
        return None if conn is None or conn.closing else conn

    def send(self, host_id: str, payload: p.Payload) -> bool:
        conn = self.get(host_id)
        return conn.send(payload) if conn else False

    async def sweep(self) -> list[str]:
        """Flush heartbeats to the database and drop agents silent for too long."""
        cfg = self.app[CONFIG]
        now = cfg.clock()
        # Only what changed since the last sweep: at 19k agents, rewriting every row every
        # sweep held the writer for long enough to slow log ingest.
        changed = [(c, c.last_seen) for c in self.connections.values() if c.last_seen != c.seen_stored]
        await self.app[STORE].hosts.touch_many((c.host_id, seen) for c, seen in changed)
        for c, seen in changed:
            c.seen_stored = seen
        silent = [c for c in self.connections.values()
                  if (now - c.last_seen).total_seconds() > cfg.offline_after]
        for conn in silent:
            log.info("agent %s silent for %.0fs; marking offline", conn.host_id, cfg.offline_after)
            if self.connections.get(conn.host_id) is conn:
                del self.connections[conn.host_id]
            conn.close(1001, "heartbeat timeout")
            await self.app[SERVICES].host_offline(conn.host_id, conn.last_seen)
        return [c.host_id for c in silent]

    async def close_all(self) -> None:
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(1001, "server shutting down")
        closing = [c.closer for c in conns if c.closer is not None]
        if closing:
            await asyncio.wait(closing, timeout=5)


async def _error_and_close(ws: web.WebSocketResponse, code: str, message: str, ref: str | None = None) -> None:
    await ws.send_str(p.encode(p.message(p.Error(code=code, message=message), ref)))
    await ws.close(code=1008, message=code.encode())


@requires(AGENT)
async def agent_ws(request: web.Request) -> web.StreamResponse:
    app = request.app
    cfg, hub, services = app[CONFIG], app[AGENTS], app[SERVICES]
    host_id = request[HOST_KEY]
    if len(hub.connections) + hub.pending >= cfg.max_agent_connections and host_id not in hub.connections:
        raise Unavailable("agent connection limit reached; raise --max-agents or add a server",
                          code="too_many_agents")
    ws = web.WebSocketResponse(heartbeat=None, compress=False, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    hub.pending += 1
    try:
        hello_env = await _read_hello(ws, cfg.hello_timeout)
    finally:
        hub.pending -= 1
    if hello_env is None:
        return ws
    hello: p.Hello = hello_env.payload
    if hello.protocol_version < MIN_PROTOCOL_VERSION:
        await _error_and_close(
            ws, "protocol_too_old",
            f"agent protocol {hello.protocol_version} is older than the oldest this server accepts "
            f"({MIN_PROTOCOL_VERSION}); upgrade rm-agent", hello_env.id)
        return ws

    conn = AgentConnection(host_id, ws, cfg.clock(), cfg.agent_queue_size)
    older = hub.connections.get(host_id)
    hub.connections[host_id] = conn
    if older is not None:
        older.close(4000, "replaced by a newer connection")
    try:
        await services.agent_hello(conn, hello_env)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    conn.send(p.Error(code="malformed", message="frames must be text JSON"))
                continue
            conn.last_seen = cfg.clock()
            await _dispatch(hub, conn, msg.data)
    finally:
        await conn.stop()
        if hub.connections.get(host_id) is conn:
            del hub.connections[host_id]
            await services.host_offline(host_id, conn.last_seen)
    return ws


async def _read_hello(ws: web.WebSocketResponse, timeout: float) -> p.Envelope | None:
    try:
        msg = await ws.receive(timeout=timeout)
    except asyncio.TimeoutError:
        await _error_and_close(ws, "hello_timeout", f"no hello within {timeout:.0f} s")
        return None
    if msg.type != WSMsgType.TEXT:
        await ws.close(code=1008, message=b"expected hello")
        return None
    try:
        env = p.parse_agent_message(msg.data)
    except (ValidationError, p.UnknownMessageType) as exc:
        await _error_and_close(ws, "bad_hello", f"first frame must be a valid hello: {str(exc)[:300]}")
        return None
    if env.type != "hello":
        await _error_and_close(ws, "hello_required", f"first frame must be hello, got {env.type!r}", env.id)
        return None
    return env


async def _dispatch(hub: AgentHub, conn: AgentConnection, raw: Any) -> None:
    try:
        env = p.parse_agent_message(raw)
    except p.UnknownMessageType as exc:
        conn.send(p.Error(code="unknown_type", message=str(exc)), exc.envelope.id)
        return
    except ValidationError as exc:
        conn.send(p.Error(code="malformed", message=str(exc)[:500]))
        return
    handler = hub.handlers.get(env.type)
    if handler is None:
        conn.send(p.Error(code="unexpected", message=f"{env.type!r} is not expected now"), env.id)
        return
    try:
        await handler(conn, env)
    except Exception as exc:  # one bad message must not drop the agent
        log.exception("handler for %s from %s failed", env.type, conn.host_id)
        conn.send(p.Error(code="handler_failed", message=f"{env.type}: {type(exc).__name__}"), env.id)


def hello_ok() -> p.HelloOk:
    return p.HelloOk(server_version=__version__, protocol_version=PROTOCOL_VERSION)
