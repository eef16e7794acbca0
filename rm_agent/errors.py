"""Connection failures as an admin reads them: what went wrong and what to do, never a
library's repr (aiohttp's messages embed `ssl:<…Fingerprint object at 0x…>`)."""

from __future__ import annotations

import ssl
from typing import Optional

import aiohttp

FINGERPRINT_HINT = ("pass --fingerprint with the SHA-256 that rm-server printed at start "
                    "(\"rm-server TLS certificate SHA-256 fingerprint: …\"), or use the install command "
                    "from the console's enrollment screen, which carries it")


def describe(exc: BaseException, server_url: Optional[str] = None) -> str:
    url = server_url or "the server"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return (f"server certificate fingerprint mismatch: pinned {exc.expected.hex()}, "
                f"server presented {exc.got.hex()}; refusing to connect (if the server's certificate "
                "was replaced on purpose, enroll again with the new fingerprint)")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", "") or str(exc.certificate_error)
        if "self-signed" in reason or "self signed" in reason:
            return f"{url} uses a self-signed TLS certificate, which nothing vouches for: {FINGERPRINT_HINT}"
        return f"{url}'s TLS certificate is not trusted ({reason}): {FINGERPRINT_HINT}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        if "WRONG_VERSION_NUMBER" in str(exc.os_error) or "wrong version number" in str(exc.os_error):
            return (f"{exc.host}:{exc.port} does not speak TLS: if the server runs without "
                    "--self-signed/--tls-cert, use an http:// URL")
        return f"TLS handshake with {exc.host}:{exc.port} failed: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        if server_url and server_url.startswith("http://"):
            return (f"{url} closed the connection without answering: if it serves HTTPS "
                    "(rm-server --self-signed or --tls-cert), use an https:// URL")
        return f"{url} closed the connection without answering"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status == 401:
            return "server rejected the agent token (401): the host may have been deleted; enroll again"
        return f"server refused the WebSocket upgrade ({exc.status} {exc.message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _os_reason(err: OSError) -> str:
    if isinstance(err, ssl.SSLError):
        return str(err.reason or err)
    return err.strerror or str(err) or type(err).__name__
