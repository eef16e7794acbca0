"""WebSocket client plumbing: URL, TLS pinning, jittered exponential backoff."""

from __future__ import annotations

import random
import ssl
from typing import Callable, Iterator

import aiohttp


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


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return (f"server certificate fingerprint mismatch: pinned {exc.expected.hex()}, "
                f"server presented {exc.got.hex()}; refusing to connect")
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status == 401:
            return "server rejected the agent token (401): the host may have been deleted; enroll again"
        return f"server refused the WebSocket upgrade ({exc.status} {exc.message})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Backoff:
    """Jittered exponential backoff: 1 s, 2 s, 4 s … capped at 60 s, each drawn from [d/2, d]."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.rng = base, cap, rng
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return ceiling / 2 + self.rng() * ceiling / 2

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next()
