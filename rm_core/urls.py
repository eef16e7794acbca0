"""Repository URLs: the one place that hides credentials in them and merges REST credentials in."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote

REDACTED = "***"

# scheme://user:password@host — the password may hold "/", spaces or an unquoted "@" (restic
# takes what it is given), so it runs lazily up to the "@" that is followed by a host, an
# optional port and the end of the authority. "host:8000/…" is a port, not a password.
_USERINFO = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):"
    r"(?P<pw>(?!\d+(?:[/\s]|$))[^\n]{1,256}?)"
    r"@(?=(?:[a-z0-9._-]+|\[[0-9a-f:.]+\])(?::\d+)?(?:[/\s\"'),;]|$))",
    re.I,
)


def redact_url(text: str) -> str:
    """Replace the password of every `scheme://user:password@host` in `text` with ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def repository_url(url: str, rest_user: str | None = None, rest_password: str | None = None) -> str:
    """Merge REST credentials into a `rest:` URL, replacing any userinfo already there
    (only ever for a child's environment: the result holds the password)."""
    if not rest_user or not url.startswith("rest:"):
        return url
    m = re.match(r"^rest:(?P<scheme>https?://)(?:[^@/]*@)?(?P<rest>.*)$", url)
    if not m:
        return url
    userinfo = quote(rest_user, safe="")
    if rest_password:
        userinfo += ":" + quote(rest_password, safe="")
    return f"rest:{m['scheme']}{userinfo}@{m['rest']}"


def redact_webhook(url: str | None) -> str | None:
    """A webhook URL with everything after the host hidden: Slack/Teams-style hooks carry
    their secret in the path or query, so only scheme and host are safe to show."""
    if not url:
        return url
    m = re.match(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^@/?#]*@)?(?P<host>[^/?#]*)", url, re.I)
    if not m:
        return REDACTED
    rest = url[m.end():]
    return f"{m['scheme']}{m['host']}" + (f"/{REDACTED}" if rest.strip("/") else "")


# ---------------------------------------------------------------- alert targets

def is_link_local(address: str) -> bool:
    """169.254.0.0/16 or fe80::/10 (an IPv4-mapped IPv6 address counts as its IPv4 one):
    where clouds answer instance-metadata requests with credentials. Not an IP: False."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local


def url_host(url: str) -> str | None:
    """The host part of `scheme://[user[:pw]@]host[:port]/…`, brackets removed (None: none)."""
    m = re.match(r"^[a-z][a-z0-9+.-]*://(?:[^@/?#]*@)?(?P<host>\[[^\]]*\]|[^/?#:]*)", url, re.I)
    return m["host"].strip("[]") or None if m else None


LINK_LOCAL_REFUSED = ("targets a link-local address (169.254.0.0/16, fe80::/10: cloud metadata services); "
                      "start the server with --allow-link-local-alerts to allow it")
