"""One message to one Apprise URL, in a worker thread (Apprise's send is synchronous), and the
rules every alert target obeys: no link-local targets unless the admin allows them, no
redirects, and no secret of the URL in what comes back.

Apprise speaks ~100 services by URL; the server never learns their APIs."""

from __future__ import annotations

import functools
import logging
import socket
from types import ModuleType
from urllib.parse import parse_qsl, unquote, urlsplit

from rm_core.urls import LINK_LOCAL_REFUSED, is_link_local, url_host

# Apprise logs through its own logger; some plugins name hosts or tokens there, and the HTTP
# libraries under it log each request's path (urllib3, at debug: "POST /hook/<token>") or
# OAuth tokens (oauthlib). Apprise is the server's only user of them. The server logs each
# failure itself, scrubbed (services/alerts.py): their lines stay out of the server's log at
# any level. Each Apprise call still gets its own lines back in its result.
for _name in ("apprise", "urllib3", "requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).propagate = False
    logging.getLogger(_name).addHandler(logging.NullHandler())

MAX_ERROR = 500


def _apprise() -> ModuleType:
    """Apprise, imported at its first use: the import takes 0.1-0.4 s and its first URL 0.6 s
    more (every plugin loads), which no admin command (`rm-server operator list`) should pay.
    Called in worker threads only."""
    import apprise

    return apprise


@functools.cache
def known_schemes() -> frozenset[str]:
    """Every URL scheme the installed Apprise has a service for (~250; the lock pins Apprise,
    so one build always knows the same). Loads every plugin the first time (~0.25 s): call it
    in a thread. The API document states the list (openapi.py), and a channel's URL must use
    one; whether the rest of the URL is what that service needs shows when it is tested or
    first sent (POST …/test: 502 with Apprise's answer; the channel's last_error)."""
    schemes: set[str] = set()
    for service in _apprise().Apprise().details().get("schemas", []):
        for key in ("protocols", "secure_protocols"):
            value = service.get(key) or []
            schemes.update([value] if isinstance(value, str) else value)
    return frozenset(s for s in schemes if s)


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0]


def literal_link_local(url: str) -> bool:
    """The URL names a link-local IP address itself (checked when a channel is saved)."""
    host = url_host(url)
    return host is not None and is_link_local(host)


def resolves_link_local(host: str | None) -> bool:
    """`host` is, or resolves to, a link-local address. Only names with a dot (or localhost)
    are looked up: many Apprise URLs keep a token where the host goes (`ntfy://topic`), and
    a token must not be sent to a DNS resolver."""
    if not host:
        return False
    if is_link_local(host):
        return True
    if "." not in host and host.lower() != "localhost":
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False  # unresolvable here: the service's own send will say so
    return any(is_link_local(str(info[4][0])) for info in infos)


def secrets_of(url: str) -> list[str]:
    """Every part of the URL that may be a secret, longest first (the whole URL included)."""
    parts = {url}
    try:
        split = urlsplit(url)
        host = split.hostname or ""
        parts |= {split.netloc, split.username or "", split.password or "", split.path, split.query}
        parts |= set(split.path.split("/")) | {v for _, v in parse_qsl(split.query)} | {k for k, _ in parse_qsl(split.query)}
        if "." not in host and host != "localhost":
            parts.add(host)  # a token where the host goes
    except ValueError:
        pass
    parts |= {unquote(p) for p in parts}
    return sorted((p for p in parts if len(p) >= 4), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    for part in secrets_of(url):
        text = text.replace(part, "***")
    return text[:MAX_ERROR]


def send(url: str, title: str, body: str, *, timeout: float, allow_link_local: bool = False) -> str | None:
    """Deliver one message; None when the service took it, else its error (secrets scrubbed).

    Blocks (DNS, HTTP, SMTP): run it in a worker thread. `timeout` bounds the whole call."""
    if not allow_link_local and resolves_link_local(url_host(url)):
        return "refused: the channel URL " + LINK_LOCAL_REFUSED
    apprise = _apprise()
    notifier = apprise.Apprise(asset=apprise.AppriseAsset(http_redirects=False))
    try:
        if not notifier.add(url):
            return "Apprise does not understand this URL: unknown scheme or a required part missing"
        for service in notifier:
            service.redirects = False  # a `?redirect=yes` in the URL must not lead past the check above
        result = notifier.notify(body=body, title=title, timeout=timeout)
    except Exception as exc:  # a plugin's own bug must not reach the dispatcher as a traceback
        return scrub(f"{type(exc).__name__}: {exc}", url)
    if result:
        return None
    lines = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
    return scrub("; ".join(dict.fromkeys(lines)) or f"the service did not take the message ({result.status.name})",
                 url)
