"""The PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`, nginx stream's
`proxy_protocol on`): behind a TCP load balancer every connection comes from the balancer,
and the header it sends first, before TLS, says which client it carries.

`rm-server serve --proxy-protocol --trusted-proxy IP` (docs/operations.md): a connection
from a trusted proxy must begin with a header (version 1 or 2), or it is closed: guessing
whether one is there would let any client that reaches the port claim an address (the
specification's own rule). Connections from other peers are served as they come. The
header is read exactly (peeked, then consumed to its last byte), so TLS starts on the next
byte, and the socket is handed to aiohttp with asyncio's public `connect_accepted_socket`.
The client address is kept per socket (by descriptor: every accepted socket sets or clears
its entry before it serves a request) and `proxied_remote` gives it to each request, so the
sign-in limiter and the audit see the client, not the balancer.

Not the `proxy-protocol` package (PyPI): it reads the header from an asyncio StreamReader,
which buffers past it into the TLS handshake, and its server is a streams server; here the
header must come off the raw socket exactly, so TLS and aiohttp take the socket after it.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("rm_server.proxy_protocol")

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest version 1 line, CRLF included (the spec's figure)
V2_MAX = 16 + 1024  # the fixed part and the addresses with room for a few TLVs
HEADER_SECONDS = 5.0  # a trusted peer that sends no complete header by then is closed


class BadHeader(ValueError):
    """The connection did not begin with a PROXY protocol header this server can read."""


def header_length(data: bytes) -> int | None:
    """The full header's length once `data` (the connection's first bytes) shows it, None
    while more is needed. Raises BadHeader when `data` cannot begin a header."""
    if data[:len(V2_SIGNATURE)] == V2_SIGNATURE[:len(data)]:
        if len(data) < 16:
            return None
        total = 16 + int.from_bytes(data[14:16], "big")
        if total > V2_MAX:
            raise BadHeader(f"a version 2 header of {total} bytes (at most {V2_MAX})")
        return total
    if b"PROXY "[:len(data)] != data[:6]:
        raise BadHeader("no PROXY protocol header")
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= V1_MAX:
            raise BadHeader("a version 1 header without its CRLF")
        return None
    return end + 2


def parse(header: bytes) -> str | None:
    """The client address a whole header carries; None when it carries none (version 2's
    LOCAL command, as the balancer's own health checks send, or an unknown protocol)."""
    if header.startswith(V2_SIGNATURE):
        return _parse_v2(header)
    return _parse_v1(header)


def _parse_v2(header: bytes) -> str | None:
    version, command = header[12] >> 4, header[12] & 0x0F
    if version != 2 or command not in (0, 1):
        raise BadHeader(f"version {version} command {command}")
    if command == 0:  # LOCAL: the proxy speaking for itself
        return None
    family, body = header[13] >> 4, header[16:]
    sizes = {1: 4, 2: 16}  # AF_INET, AF_INET6; AF_UNIX and UNSPEC carry no IP address
    if family not in sizes:
        return None
    size = sizes[family]
    if len(body) < 2 * size + 4:
        raise BadHeader("addresses shorter than their family")
    return str(ipaddress.ip_address(body[:size]))


def _parse_v1(header: bytes) -> str | None:
    try:
        words = header[:-2].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise BadHeader("a version 1 header that is not ASCII") from None
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return None
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise BadHeader("a version 1 header that is not TCP4, TCP6 or UNKNOWN")
    try:
        address = ipaddress.ip_address(words[2])
    except ValueError:
        raise BadHeader(f"a version 1 source that is not an address: {words[2][:40]!r}") from None
    if (address.version == 4) != (words[1] == "TCP4"):
        raise BadHeader("a version 1 source of the other family")
    return str(address)


async def read_header(sock: socket.socket) -> str | None:
    """Consume the header at the start of `sock` (non-blocking), not a byte more."""
    loop = asyncio.get_running_loop()
    got = b""
    while True:
        await _readable(loop, sock)
        seen = got + sock.recv(V2_MAX - len(got), socket.MSG_PEEK)
        if len(seen) == len(got):
            raise BadHeader("closed before its header")
        total = header_length(seen)
        if total is not None and len(seen) >= total:
            return parse(got + sock.recv(total - len(got)))
        # Short of a whole header, every byte there is the header's: take them, so the next
        # wait is for more (peeked bytes would keep the socket readable: a busy loop).
        got += sock.recv(len(seen) - len(got))


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


class ProxiedListener:
    """Accepts on listening sockets, reads trusted peers' headers, hands every connection to
    `server` (aiohttp's web.Server, an AppRunner's `server`) with TLS when `ssl_ctx` is set."""

    def __init__(self, ssl_ctx: ssl.SSLContext | None, trusted: frozenset[str]) -> None:
        self.ssl_ctx, self.trusted = ssl_ctx, trusted
        self.server: Callable[[], Any] = lambda: None  # set by start()
        self.clients: dict[int, str] = {}  # socket descriptor -> the client its header named
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, server: Callable[[], Any], socks: list[socket.socket], backlog: int) -> None:
        self.server = server
        for sock in socks:
            sock.setblocking(False)
            sock.listen(backlog)
            self._spawn(self._accept(sock))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def remote_of(self, request: web.Request) -> str | None:
        transport = request.transport
        raw = transport.get_extra_info("socket") if transport is not None else None
        return self.clients.get(raw.fileno()) if raw is not None else None

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # out of descriptors, a reset before accept: the next one
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._spawn(self._hand_over(conn, peer))

    async def _hand_over(self, conn: socket.socket, peer: Any) -> None:
        fd = conn.fileno()
        self.clients.pop(fd, None)  # a descriptor reused from an earlier connection
        try:
            if str(ipaddress.ip_address(peer[0])) in self.trusted:
                try:
                    async with asyncio.timeout(HEADER_SECONDS):  # not wait_for: tests/unit/test_waiting.py
                        client = await read_header(conn)
                except (BadHeader, TimeoutError) as exc:
                    # the balancer itself sent no header: a configuration to mend, so said
                    log.warning("closed a connection from trusted proxy %s: %s", peer[0], exc or "no header in time")
                    raise
                if client is not None:
                    self.clients[fd] = client
            await asyncio.get_running_loop().connect_accepted_socket(self.server, conn, ssl=self.ssl_ctx)
        except (BadHeader, OSError, ssl.SSLError, ValueError) as exc:  # TimeoutError is an OSError
            log.debug("connection from %s closed: %s", peer[0], exc)  # scanners' failed handshakes: not news
            self.clients.pop(fd, None)
            conn.close()


def proxied_remote(listener: ProxiedListener) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: each request's `remote` is the client the PROXY header named."""
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request],
                                                                 Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        client = listener.remote_of(request)
        return await handler(request.clone(remote=client) if client is not None else request)
    return middleware
