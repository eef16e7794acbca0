"""A minimal WebSocket client (RFC 6455) on a raw asyncio Protocol, for the simulated agents.

The fleet benches run thousands of agents on the box that runs the server they measure, so
every CPU-second the simulation spends is taken from the server. aiohttp's client (a
ClientSession request per connect, a reader task and a coroutine wake-up per frame) took
as much CPU as the server itself in a 19k connect storm. This speaks the same bytes on the
wire: the HTTP/1.1 Upgrade with the agent's bearer token, masked client text frames, the
server's unmasked frames parsed incrementally in data_received and handed to a callback
(no task per connection for reading), pong for ping, close answered with close.

Only what the agent protocol uses: no extensions (no permessage-deflate offered; the
server runs its agent socket with compress=False anyway), no subprotocols, no TLS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Callable

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024  # an HTTP response head larger than this is not a server we speak to
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(ConnectionError):
    """The server did not switch protocols (e.g. 401 bad token, 503 too many agents)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


def upgrade_request(host: str, path: str, token: str) -> tuple[bytes, bytes]:
    """The GET with `Upgrade: websocket` the agent sends (rm_agent/connection.py: the path and
    `Authorization: Bearer <token>`), and the Sec-WebSocket-Accept the server must answer."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key.decode()}\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()
    return req, accept


class WSClient(asyncio.Protocol):
    """One WebSocket connection. `on_text(ws, payload_bytes)` is called for every complete
    text message, from data_received; `ready` resolves on the 101, `closed` when the TCP
    connection is gone."""

    __slots__ = ("tag", "on_text", "transport", "ready", "closed", "close_code", "_req", "_accept",
                 "_mask", "_buf", "_upgraded", "_frags", "_close_sent", "_abort_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, accept: bytes,
                 on_text: Callable[["WSClient", bytes], None], tag: object = None) -> None:
        self.tag, self.on_text = tag, on_text
        self.transport: asyncio.Transport | None = None
        self.ready = loop.create_future()
        self.closed = loop.create_future()
        self.close_code: int | None = None
        self._req, self._accept = request, accept
        # RFC 6455 5.3 wants client frames masked so that a proxy cannot be confused by
        # attacker-chosen bytes; one random key per connection is enough on loopback and
        # saves an urandom call per frame.
        self._mask = os.urandom(4)
        self._buf = b""
        self._upgraded = False
        self._frags: list[bytes] | None = None
        self._close_sent = False
        self._abort_timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self._req)

    def connection_lost(self, exc) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionResetError("connection closed during the WebSocket handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._fail_handshake(HandshakeError(0, "response head too large"))
                else:
                    self._buf = buf
                return
            self._buf = b""
            if not self._handshake(buf[:end]):
                return
            buf = buf[end + 4:]
            if not buf:
                return
        self._buf = self._frames(buf)

    # ---------------------------------------------------------------- handshake

    def _handshake(self, head: bytes) -> bool:
        status_line, _, headers = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self._fail_handshake(HandshakeError(0, f"not an HTTP response: {status_line[:80]!r}"))
            return False
        if status != 101:
            reason = parts[2].decode(errors="replace") if len(parts) > 2 else ""
            self._fail_handshake(HandshakeError(status, reason))
            return False
        accept = None
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if accept != self._accept:
            self._fail_handshake(HandshakeError(status, "wrong Sec-WebSocket-Accept"))
            return False
        self._upgraded = True
        self.ready.set_result(None)
        return True

    def _fail_handshake(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.transport.close()

    # ---------------------------------------------------------------- server frames

    def _frames(self, buf: bytes) -> bytes:
        """Handle every complete frame in buf; return the incomplete rest."""
        n, i = len(buf), 0
        while n - i >= 2:
            b0, b1 = buf[i], buf[i + 1]
            ln, h = b1 & 0x7F, i + 2
            if ln == 126:
                if n - i < 4:
                    break
                ln, h = int.from_bytes(buf[h:h + 2], "big"), h + 2
            elif ln == 127:
                if n - i < 10:
                    break
                ln, h = int.from_bytes(buf[h:h + 8], "big"), h + 8
            if b1 & 0x80:  # a server must not mask (RFC 6455 5.1): fail the connection
                self._protocol_error()
                return b""
            end = h + ln
            if end > n:
                break
            payload = buf[h:end]
            i = end
            op = b0 & 0x0F
            if op == OP_TEXT:
                if b0 & 0x80:
                    self.on_text(self, payload)
                else:
                    self._frags = [payload]
            elif op == OP_CONT and self._frags is not None:
                self._frags.append(payload)
                if b0 & 0x80:
                    msg, self._frags = b"".join(self._frags), None
                    self.on_text(self, msg)
            elif op == OP_PING:
                self._write(OP_PONG, payload)
            elif op == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self._close_sent:
                    self._close_sent = True
                    self._write(OP_CLOSE, payload[:2])
                self.transport.close()
                return b""
            # binary and pong frames, and a continuation of a binary message: nothing to do
            # (the simulated agents, like aiohttp's reader for them, look at text only)
        return buf[i:] if i < n else b""

    def _protocol_error(self) -> None:
        self.close_code = 1002
        if not self._close_sent:
            self._close_sent = True
            self._write(OP_CLOSE, (1002).to_bytes(2, "big"))
        self.transport.close()

    # ---------------------------------------------------------------- client frames

    def _write(self, op: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            head = bytes((0x80 | op, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | op, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | op, 0xFF)) + n.to_bytes(8, "big")
        key = self._mask
        if n:
            # the XOR over the whole payload as one big integer: a C loop, not a Python one per byte
            keys = key * ((n >> 2) + 1)
            data = (int.from_bytes(data, "big") ^ int.from_bytes(keys[:n], "big")).to_bytes(n, "big")
        self.transport.write(head + key + data)

    def send_text(self, text: str) -> None:
        """Send one text message now (the transport buffers what the socket does not take)."""
        if self.transport is None or self.transport.is_closing() or self._close_sent:
            raise ConnectionResetError("Cannot write to closing transport")  # as aiohttp's send_str
        self._write(OP_TEXT, text.encode())

    async def send_str(self, text: str) -> None:
        """aiohttp's ClientWebSocketResponse.send_str, for callers written against it."""
        self.send_text(text)

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake."""
        if self.transport is not None:
            self.transport.abort()

    async def close(self, code: int = 1000, timeout: float = 10) -> None:
        """Close handshake: send close, wait for the server to close the connection (it
        answers our close with its own and hangs up), abort after `timeout`."""
        if self.transport is None or self.closed.done():
            return
        if not self._upgraded:  # no WebSocket yet (a timeout or cancel mid-handshake): hang up
            self.transport.abort()
        elif not self._close_sent and not self.transport.is_closing():
            self._close_sent = True
            self.close_code = code
            self._write(OP_CLOSE, code.to_bytes(2, "big"))
            self._abort_timer = asyncio.get_running_loop().call_later(timeout, self.transport.abort)
        await asyncio.shield(self.closed)
        if self.ready.done() and not self.ready.cancelled():
            self.ready.exception()  # seen: a handshake cut short is no "never retrieved" warning
