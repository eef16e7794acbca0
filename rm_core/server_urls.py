"""The server URLs an agent is given — one per replica, or one load balancer's — under one
rule for `rm-agent enroll --server`, the agent's config file and `rm-server serve --agent-url`.

A URL is http:// or https://, names a host, and holds no space or comma (a comma separates
URLs in the one-value form `--server URL,URL`); a trailing slash is dropped so the same server
is not listed twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

# An agent tries its URLs in turn: more than this is a mistake, not a fleet layout.
MAX_SERVER_URLS = 16


class ServerUrlError(ValueError):
    """Not a usable server URL; the message names what was given and why."""


def check_server_url(url: str) -> str:
    """`url` without surrounding spaces and trailing slash, or ServerUrlError."""
    clean = url.strip()
    if not clean.startswith(("http://", "https://")):
        raise ServerUrlError(f"server URL {url!r} must start with http:// or https://")
    if any(c.isspace() for c in clean) or "," in clean:
        raise ServerUrlError(f"server URL {url!r} holds a space or a comma (commas separate URLs)")
    parts = urlsplit(clean)
    try:
        parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        raise ServerUrlError(f"server URL {url!r} has an invalid port") from None
    if not parts.hostname:
        raise ServerUrlError(f"server URL {url!r} names no host")
    if parts.query or parts.fragment:
        raise ServerUrlError(f"server URL {url!r} has a query or fragment; give the server's base URL")
    return clean.rstrip("/")


def parse_server_urls(values: Iterable[str]) -> list[str]:
    """Every URL in `values` (each value one URL or several, comma-separated), checked, each
    once, in the order given. At least one, at most MAX_SERVER_URLS."""
    urls: list[str] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue  # "a,b," or "a, ,b": an empty slot is not a URL
            url = check_server_url(item)
            if url not in urls:
                urls.append(url)
    if not urls:
        raise ServerUrlError("no server URL given")
    if len(urls) > MAX_SERVER_URLS:
        raise ServerUrlError(f"{len(urls)} server URLs given; at most {MAX_SERVER_URLS}")
    return urls
