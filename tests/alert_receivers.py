"""Real receivers for notification channels, on port 0 of this machine: an HTTP endpoint for
Apprise's `json://` and an SMTP server (aiosmtpd) for `mailto://`."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiosmtpd.smtp import SMTP


@dataclass
class JsonReceiver:
    """Records every POST; answers with the next status of `statuses` (then 200), or never
    when `hang` is set (a service that does not answer)."""

    url: str = ""
    received: list[dict] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hang: asyncio.Event | None = None
    paths: list[str] = field(default_factory=list)
    # (path, body) of each accepted POST, recorded together: two posts in flight at once
    # would pair `paths` and `received` wrongly (each is appended at a different await)
    messages: list[tuple[str, dict]] = field(default_factory=list)

    def channel_url(self, path: str = "hook") -> str:
        return self.url.replace("http://", "json://") + "/" + path

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        self.times.append(time.monotonic())
        if self.hang is not None:
            await self.hang.wait()
        body = await request.json() if request.can_read_body else {}
        status = self.statuses.pop(0) if self.statuses else 200
        if status < 300:
            self.received.append(body)
            self.messages.append((request.path, body))
        if status in (301, 302, 307, 308):
            raise web.HTTPFound(location="/elsewhere") if status == 302 else web.HTTPTemporaryRedirect("/elsewhere")
        return web.json_response({}, status=status)


@asynccontextmanager
async def json_receiver() -> AsyncIterator[JsonReceiver]:
    rec = JsonReceiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        if rec.hang is not None:
            rec.hang.set()
        await runner.cleanup()


@dataclass
class SmtpReceiver:
    port: int = 0
    messages: list[email.message.EmailMessage] = field(default_factory=list)

    def channel_url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=rm@example.com&to=ops@example.com"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def text(self, i: int) -> str:
        msg = self.messages[i]
        part = msg.get_body(preferencelist=("plain", "html"))
        return f"{msg['Subject']}\n{part.get_content() if part is not None else ''}"


@asynccontextmanager
async def smtp_receiver() -> AsyncIterator[SmtpReceiver]:
    rec = SmtpReceiver()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(rec, hostname="localhost"), "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    try:
        yield rec
    finally:
        server.close()
        await server.wait_closed()
