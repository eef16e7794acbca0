"""The agent's WebSocket session with the server, and its plumbing (URL, TLS pinning, errors).

One session at a time: hello, resend of every unacknowledged outbox event, then frames both
ways (a writer queue out, the handler table in) until the socket drops; then reconnect with
jittered backoff. With several server URLs (replicas) the first is a random one and every
attempt after a failure or a drop goes to the next, so a dead replica is retried only after
each other one had its turn, at the same pace as one URL. The session owns no job or
schedule state: the agent passes callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from typing import Any, Callable, Optional

import aiohttp
from pydantic import ValidationError

from rm_agent import errors
from rm_agent.config import AgentConfig
from rm_agent.outbox import Outbox
from rm_core import protocol as p
from rm_core.backoff import Backoff

log = logging.getLogger("rm_agent")


class ProtocolRejected(RuntimeError):
    """The server refused this agent (old protocol, revoked token); retry slowly."""


def ws_url(server_url: str) -> str:
    return server_url.rstrip("/") + "/api/v1/agent/ws"


def ssl_param(server_url: str, fingerprint: str | None) -> aiohttp.Fingerprint | ssl.SSLContext | bool:
    """With a pinned fingerprint the certificate is trusted iff its DER SHA-256 matches
    (self-signed certificates work); without one, normal CA verification applies."""
    if fingerprint and server_url.startswith("https"):
        return aiohttp.Fingerprint(bytes.fromhex(fingerprint))
    return True


def describe_error(exc: BaseException, server_url: Optional[str] = None) -> str:
    return errors.describe(exc, server_url)


def limit_unacknowledged(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    """Have the kernel drop the connection once data sent on it went unacknowledged for
    `seconds` (Linux's TCP_USER_TIMEOUT; elsewhere nothing changes)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = ws.get_extra_info("socket")
    if option is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
    except OSError as exc:
        log.debug("cannot set TCP_USER_TIMEOUT: %s", exc)


class Session:
    heartbeat_interval = 30.0
    hello_timeout = 15.0
    # A server whose machine vanished (power, a cut network) never closes the socket, and
    # TCP alone would notice only after ~15 minutes of retries. The heartbeat above sends
    # something every 30 s, so the connection ends at most this long after that goes
    # unanswered, and the agent moves on to the next URL. Costs the server nothing.
    unacknowledged_timeout = 30.0

    def __init__(self, config: AgentConfig, outbox: Outbox, *, hello: Callable[[], p.Hello],
                 on_message: Callable[[str], None], on_online: Callable[[], None],
                 on_status: Callable[[str, str | None], None], running_jobs: Callable[[], list[str]],
                 start: int | None = None) -> None:
        self.config = config
        self.urls = list(config.server_urls)
        # A random first URL spreads a fleet over its replicas, and again after every restart.
        self._index = random.randrange(len(self.urls)) if start is None else start % len(self.urls)
        self.outbox = outbox
        self.hello = hello
        self.on_message = on_message
        self.on_online = on_online
        self.on_status = on_status
        self.running_jobs = running_jobs
        self.online = False
        self.first_attempt_done = asyncio.Event()  # the scheduler waits for this at start
        self._queue: asyncio.Queue[str] | None = None

    @property
    def url(self) -> str:
        """The URL connected to, being tried, or (between attempts) last tried."""
        return self.urls[self._index]

    def use_urls(self, urls: list[str]) -> None:
        """Go on with `urls` (which name the one in use): the connection stays, and the next
        attempt after it drops goes to the URL after it in the new list."""
        self._index = urls.index(self.url)
        self.urls = list(urls)

    async def run(self) -> None:
        """Connect, and reconnect whenever the connection ends, until cancelled."""
        backoff = Backoff()
        timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                error = None
                url = self.url
                try:
                    if await self._connect(http, url):
                        backoff.reset()
                except asyncio.CancelledError:
                    raise
                except ProtocolRejected as exc:
                    error = str(exc)
                    backoff.jump_to_cap()  # an operator has to act
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValidationError, ValueError) as exc:
                    error = describe_error(exc, url)
                    if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status in (401, 403):
                        backoff.jump_to_cap()
                except Exception as exc:  # a bug in a handler must not end the connection loop
                    log.exception("connection session crashed")
                    error = describe_error(exc, url)
                finally:
                    self._set_offline()
                    self.first_attempt_done.set()
                self.on_status("disconnected", error)  # about `url`: the index moves on below
                # One backoff for all URLs: with every replica dead the agent knocks no faster
                # than with one, and each URL sees 1/N of the attempts.
                delay = backoff.next()
                self._index = (self._index + 1) % len(self.urls)
                then = "retrying" if self.url == url else f"trying {self.url}"
                if error:
                    log.warning("connection to %s failed: %s; %s in %.1fs", url, error, then, delay)
                else:
                    log.info("disconnected from %s; %s in %.1fs", url, then, delay)
                await asyncio.sleep(delay)

    async def _connect(self, http: aiohttp.ClientSession, url: str) -> bool:
        """One connection to `url`; returns True when it got as far as hello.ok."""
        ws = await http.ws_connect(
            ws_url(url), headers={"Authorization": f"Bearer {self.config.agent_token}"},
            ssl=ssl_param(url, self.config.fingerprint), heartbeat=None,
            max_msg_size=32 * 1024 * 1024,
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            limit_unacknowledged(ws, self.unacknowledged_timeout)
            await ws.send_str(p.encode(p.message(self.hello())))
            first = await ws.receive(timeout=self.hello_timeout)
            if first.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"server closed the connection during hello (code {ws.close_code})")
            env = p.parse_server_message(first.data)
            if env.type == "error":
                raise ProtocolRejected(f"server refused hello: {env.payload.code}: {env.payload.message}")
            if env.type != "hello.ok":
                raise ConnectionError(f"expected hello.ok, got {env.type}")
            log.info("connected to %s (server %s)", url, env.payload.server_version)
            await self._resend(ws)
            self._queue = asyncio.Queue()
            self.online = True  # from here new events go through the queue, behind the resent ones
            self.first_attempt_done.set()
            self.on_online()
            tasks = [asyncio.create_task(self._writer(ws, self._queue)),
                     asyncio.create_task(self._heartbeat())]
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.on_message(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
            return True
        finally:
            self._set_offline()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()

    def _set_offline(self) -> None:
        self.online = False
        self._queue = None

    async def _resend(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Everything not yet acked, in the order it happened (events added meanwhile included)."""
        last = 0
        sent = 0
        while True:
            batch = self.outbox.pending(after_id=last)
            if not batch:
                break
            for ev in batch:
                await ws.send_str(p.encode(p.Envelope(type=ev.type, payload=ev.payload)))
                last = ev.id
                sent += 1
        if sent:
            log.info("resent %d unacknowledged job events", sent)

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse, queue: asyncio.Queue[str]) -> None:
        while True:
            frame = await queue.get()
            await ws.send_str(frame)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.send_payload(p.Heartbeat(running_jobs=self.running_jobs()))

    def send(self, type_: str, payload: dict[str, Any]) -> bool:
        """Queue a frame whose payload is already a dict; False when offline (nothing queued)."""
        if self._queue is None:
            return False
        self._queue.put_nowait(p.encode(p.Envelope(type=type_, payload=payload)))
        return True

    def send_payload(self, payload: p.Payload, ref: str | None = None) -> bool:
        """Queue a typed payload in an envelope of its type (a reply names its frame in `ref`);
        False when offline."""
        if self._queue is None:
            return False
        self._queue.put_nowait(p.encode(p.message(payload, ref)))
        return True
