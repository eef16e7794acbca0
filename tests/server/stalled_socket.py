"""An events socket that stops reading, built on asyncio's public streams: the handshake and
client frames by hand (RFC 6455), then `transport.pause_reading()`, so whatever the server
sends stays in its own buffers — the slow console a memory bound must survive."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from urllib.parse import urlsplit


class StalledEvents:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str, token: str) -> "StalledEvents":
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: Bearer {token}\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise ConnectionRefusedError(status)
        sock = cls(reader, writer)
        sock.stop_reading()
        return sock

    def stop_reading(self) -> None:
        self.writer.transport.pause_reading()

    def resume_reading(self) -> None:
        self.writer.transport.resume_reading()

    async def send_json(self, data: dict) -> None:
        payload = json.dumps(data).encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        head = struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask
        self.writer.write(head + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        await self.writer.drain()

    async def next_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame (servers do not mask)."""
        b1, b2 = await self.reader.readexactly(2)
        size = b2 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b1 & 0x0F, await self.reader.readexactly(size)

    async def receive_json(self, timeout: float = 10) -> dict:
        while True:
            opcode, payload = await asyncio.wait_for(self.next_frame(), timeout)
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                raise ConnectionResetError(f"closed: {payload[:2].hex()} {payload[2:].decode(errors='replace')}")

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Gone at once (a reset), as a console whose link or process died."""
        self.writer.transport.abort()
