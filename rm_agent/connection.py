"""WebSocket client plumbing: URL, TLS pinning (the reconnect backoff is rm_core.backoff)."""

from __future__ import annotations

import ssl

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
