"""Notification channels (DESIGN.md §11): the events a channel may follow, its REST bodies,
what an operator sees of one, and the digest text a storm of events becomes.

A channel's URL is an Apprise URL (`mailto://`, `slack://`, `ntfy://`, `json://` …) and a
secret: it is taken here, sealed by the server and never shown whole again. `redact_channel_url`
is what everyone sees instead."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from rm_core.api import Body, Out
from rm_core.bounds import SPACE_CLASS, Name, States
from rm_core.enums import StrEnum


class AlertEvent(StrEnum):
    backup_failed = "backup.failed"
    backup_warning = "backup.warning"
    backup_anomaly = "backup.anomaly"  # a backup far outside its group's history (DESIGN.md §12)
    host_stale = "host.stale"
    host_offline = "host.offline"  # offline longer than the server's --alert-offline-after
    check_failed = "check.failed"
    drill_failed = "drill.failed"
    drill_overdue = "drill.overdue"
    repo_unreachable = "repo.unreachable"


# What each event says in a digest's title: "3 hosts: backup failed".
EVENT_TITLES = {
    AlertEvent.backup_failed: "backup failed",
    AlertEvent.backup_warning: "backup ended with a warning",
    AlertEvent.backup_anomaly: "backup outside its usual size",
    AlertEvent.host_stale: "no recent backup (stale)",
    AlertEvent.host_offline: "host offline",
    AlertEvent.check_failed: "repository check failed",
    AlertEvent.drill_failed: "restore drill failed",
    AlertEvent.drill_overdue: "restore drill overdue",
    AlertEvent.repo_unreachable: "repository unreachable",
}

MAX_INTERVAL_S = 86_400
DEFAULT_INTERVAL_S = 300  # Alertmanager's group_interval default


_SCHEME = r"^[A-Za-z][A-Za-z0-9+.-]{0,31}://"  # ASCII: re.I would also take the Kelvin sign for a k; x:// is X


def _channel_url(url: str) -> str:
    # Apprise reads the scheme to pick a service; the rest is the service's business (and a
    # secret). Control characters would end up in a log line or an HTTP request line.
    if not re.match(_SCHEME + r"\S", url):
        raise ValueError("url must be an Apprise URL, scheme://… (e.g. mailto://, slack://, json://)")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("url must not contain control characters")
    return url


# _channel_url's rule, stated for the API document: after the scheme a character that is not
# whitespace (\S: str.isspace), and no control character anywhere.
CHANNEL_URL_PATTERN = _SCHEME + f"[^\\u0000-\\u001f\\u007f{SPACE_CLASS}][^\\u0000-\\u001f\\u007f]*$"
ChannelUrl = Annotated[str, Field(min_length=4, max_length=2048), AfterValidator(_channel_url),
                       States(pattern=CHANNEL_URL_PATTERN, description="an Apprise URL, scheme://…")]


class ChannelBody(Body):
    """`POST /notification-channels` and `PUT /notification-channels/{id}` (the whole channel).

    `min_interval_s`: after a message, further events of the same kind wait this long and go
    out together in the next digest (Alertmanager's group_interval)."""

    name: Name = Field(min_length=1, max_length=100)
    url: ChannelUrl
    events: list[AlertEvent] = Field(min_length=1, max_length=len(AlertEvent), json_schema_extra={"uniqueItems": True})
    min_interval_s: int = Field(default=DEFAULT_INTERVAL_S, ge=0, le=MAX_INTERVAL_S)

    @field_validator("events")
    @classmethod
    def _distinct(cls, v: list[AlertEvent]) -> list[AlertEvent]:
        if len(set(v)) != len(v):
            raise ValueError("events must not repeat an event")
        return v


class Channel(Out):
    """A channel as everyone sees it: the URL redacted, and how its sending goes."""

    id: str
    name: str
    url: str  # redacted: scheme and host only
    events: list[AlertEvent]
    min_interval_s: int
    created_at: datetime
    updated_at: datetime
    last_sent_at: datetime | None = None
    last_error: str | None = None  # the service's answer to the last failed send (kept after a success)
    last_error_at: datetime | None = None
    failures: int = 0  # sends failed in a row; 0 once one goes through
    next_retry_at: datetime | None = None
    pending: int = 0  # events waiting for the channel's next digest


class ChannelTestResult(Out):
    ok: bool
    channel: Channel


def redact_channel_url(url: str) -> str:
    """What may be shown of a channel URL: its scheme and host, nothing after.

    Many services keep their token where a URL has its host (`slack://T0/B0/XX`,
    `ntfy://topic`): a host without a dot that is not `localhost` is masked too."""
    m = re.match(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?:[^@/?#]*@)?(?P<host>\[[^\]]*\]|[^/?#:]*)(?P<port>:\d+)?",
                 url, re.I)
    if not m:
        return "***"
    host = m["host"]
    if not ("." in host or host.startswith("[") or host.lower() == "localhost"):
        host = f"{host[0]}…{host[-1]}" if len(host) > 2 else "***"
    return f"{m['scheme']}://{host}{m['port'] or ''}/…"


# ---------------------------------------------------------------- digests


@dataclass(frozen=True)
class AlertSubject:
    """One occurrence: which host (or group), and what happened to it."""

    host_id: str
    detail: str = ""
    hostname: str = ""  # filled in when the digest is written (events carry ids only)


MAX_LISTED = 50  # hosts a digest names; the rest are counted


def digest_text(event: AlertEvent, count: int, hosts: int, listed: list[AlertSubject],
                server: str = "") -> tuple[str, str]:
    """(title, body) of one message: `count` occurrences of `event` on `hosts` hosts, the
    first few of them `listed`."""
    what = EVENT_TITLES[event]
    if count == 1 and listed:
        title = f"[restic-manager] {listed[0].hostname or listed[0].host_id}: {what}"
    else:
        title = f"[restic-manager] {what} on {hosts} host{'s' if hosts != 1 else ''}"
    lines = [f"{event.value}: {what} — {count} occurrence{'s' if count != 1 else ''}"
             f" on {hosts} host{'s' if hosts != 1 else ''}", ""]
    for s in listed:
        lines.append(f"- {s.hostname or s.host_id} ({s.host_id})" + (f": {s.detail}" if s.detail else ""))
    if count > len(listed):
        lines.append(f"… and {count - len(listed)} more")
    if server:
        lines += ["", f"server: {server}"]
    return title, "\n".join(lines)
