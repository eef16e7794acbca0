"""The agent WebSocket route: hello phase with deadline, version gate, then every frame
handed to the agent-message handler table (services/agent_messages.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from rm_core import protocol as p
from rm_core.version import MIN_PROTOCOL_VERSION
from rm_server.api.common import AGENT, HOST_KEY, requires, websocket_or_400
from rm_server.api.doc import documented
from rm_server.errors import Unavailable
from rm_server.keys import AGENT_MESSAGES, AGENTS, CONFIG, HOSTS
from rm_server.ws.agent_hub import AgentConnection



async def _error_and_close(ws: web.WebSocketResponse, code: str, message: str, ref: str | None = None) -> None:
    await ws.send_str(p.encode(p.message(p.Error(code=code, message=message), ref)))
    await ws.close(code=1008, message=code.encode())


@requires(AGENT)
@documented("The agent's connection: hello, schedules, commands, job events",
            description="WebSocket with an agent token; the frames are the agent protocol, docs/protocol.md. "
                        "503 when the server holds as many agent connections as it is configured for.",
            websocket=True, errors=(503,))
async def agent_ws(request: web.Request) -> web.StreamResponse:
    ws = websocket_or_400(request, web.WebSocketResponse(heartbeat=None, compress=False, max_msg_size=4 * 1024 * 1024))
    cfg, hub = request.app[CONFIG], request.app[AGENTS]
    host_id = request[HOST_KEY]
    if len(hub.connections) + hub.pending >= cfg.max_agent_connections and host_id not in hub.connections:
        raise Unavailable("agent connection limit reached; raise --max-agents or add a server",
                          code="too_many_agents")
    await ws.prepare(request)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    return await _serve_agent(request, ws, host_id, sock)


async def _serve_agent(request: web.Request, ws: web.WebSocketResponse, host_id: str,
                       sock: Any) -> web.WebSocketResponse:
    app = request.app
    cfg, hub, messages = app[CONFIG], app[AGENTS], app[AGENT_MESSAGES]
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

    conn = AgentConnection(host_id, ws, cfg.clock(), cfg.agent_queue_size, sock)
    conn.features = frozenset(hello.features)
    older = hub.connections.get(host_id)
    hub.connections[host_id] = conn
    if older is not None:
        older.close(4000, "replaced by a newer connection")
    try:
        await messages.hello(conn, hello_env)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    conn.send(p.Error(code="malformed", message="frames must be text JSON"))
                continue
            conn.last_seen = cfg.clock()
            await messages.dispatch(conn, msg.data)
    finally:
        await conn.stop()
        hub.closed(conn)
        if hub.connections.get(host_id) is conn:
            del hub.connections[host_id]
            await app[HOSTS].offline(host_id, conn.last_seen)
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
