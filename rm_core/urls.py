"""Repository URLs: hide credentials embedded in them."""

from __future__ import annotations

import re

# rest:https://user:pass@host/ or s3 style scheme://user:pass@host
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)


def redact_url(url: str) -> str:
    """Replace the password part of user:pass@ with ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def with_rest_credentials(url: str, user: str | None, password: str | None) -> str:
    """Merge REST-server credentials into a rest: URL (for the child environment only)."""
    if not user or not url.startswith("rest:"):
        return url
    from urllib.parse import quote

    inner = url[len("rest:"):]
    scheme, sep, rest = inner.partition("://")
    if not sep:
        return url
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"rest:{scheme}://{userinfo}@{rest}"
