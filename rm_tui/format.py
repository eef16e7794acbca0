"""Pure formatting helpers for table cells (no widgets, easy to unit test)."""

from __future__ import annotations

import re
from typing import Any
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")


def age(when: datetime | None, now: datetime | None = None) -> str:
    """'42s', '5m', '3h', '2d' since `when`; '—' when never."""
    if when is None:
        return "—"
    now = now or datetime.now(timezone.utc)
    secs = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def verified(state: str | None, finished_at: datetime | None, now: datetime | None = None) -> str:
    """The fleet's "last verified" cell: '2h ago' after a good drill, 'failed 2h' after a bad one
    (short: the column is narrow), '' for a host without drills (no finished drill to show)."""
    if state is None:
        return ""
    ago = age(finished_at, now) if finished_at else "?"
    return f"{ago} ago" if state in ("succeeded", "warning") else f"{state} {ago}"


def size(n: int | None) -> str:
    """Bytes in binary units: '1.4 GiB'; '—' when unknown."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable


def short_id(ident: str) -> str:
    """Ids are ULIDs whose first 10 characters are a timestamp: the random tail tells them apart."""
    return ident[-8:].lower()


def when(ts: datetime | None, now: datetime | None = None) -> str:
    """Local wall-clock time to the second; the date only when it is not today."""
    if ts is None:
        return "—"
    local = ts.astimezone()
    today = (now or datetime.now(timezone.utc)).astimezone().date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%Y-%m-%d %H:%M")


def zoned(ts: datetime | None, tz: str, now: datetime | None = None) -> str:
    """A schedule's time in its own zone, with the zone's name: '02:00 EST', '2026-01-02 02:00 EST'
    when not today there. An unknown zone falls back to the console's local time, labelled too."""
    if ts is None:
        return "—"
    try:
        zone: tzinfo | None = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    there = ts.astimezone(zone)
    today = (now or datetime.now(timezone.utc)).astimezone(zone).date()
    return there.strftime("%H:%M %Z" if there.date() == today else "%Y-%m-%d %H:%M %Z")


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 host', '2 hosts', '20,000 hosts'."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def duration(secs: float | None) -> str:
    """'0.4s', '42s', '5m 03s', '2h 07m'; '—' when unknown."""
    if secs is None:
        return "—"
    if secs < 10:
        return f"{secs:.1f}s"
    s = int(round(secs))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def human_summary(summary: dict[str, Any]) -> str:
    """restic's summary as a person reads it: '12 new files · 3 changed · 360 MiB added in 1.7s · snapshot 4f1a2b3c'."""
    parts = []
    if isinstance(summary.get("files_new"), int):
        parts.append(plural(summary["files_new"], "new file"))
    if isinstance(summary.get("files_changed"), int):
        parts.append(f"{summary['files_changed']:,} changed")
    if isinstance(summary.get("data_added"), int):
        added = f"{size(summary['data_added'])} added"
        if isinstance(summary.get("total_duration"), (int, float)):
            added += f" in {duration(summary['total_duration'])}"
        parts.append(added)
    elif isinstance(summary.get("total_duration"), (int, float)):
        parts.append(f"took {duration(summary['total_duration'])}")
    if isinstance(summary.get("snapshot_id"), str):
        parts.append(f"snapshot {summary['snapshot_id'][:8]}")
    return " · ".join(parts)


def short_ids(text: str) -> str:
    """Every ULID in `text` as the 8 characters shown everywhere else ('host:01J…' -> 'host:4k2m9x7q')."""
    return ULID.sub(lambda m: short_id(m.group(0)), text)


# A live query (browse, diff, retention preview) asks the host's agent: these are the refusals
# an operator meets, with what to do about them.
QUERY_HINTS = {
    "host_offline": "it answers again once its agent reconnects",
    "agent_too_old": "upgrade rm-agent on that host",
    "agent_busy": "it is answering other queries; try again in a moment",
    "timeout": "try again; a large repository or a slow REST server can take longer",
}


def query_problem(code: str, status: int, message: str, hostname: str, host_id: str) -> str:
    """A refused live query as one readable sentence naming the host by its name."""
    text = message.replace(f"host {host_id}", hostname).replace(host_id, hostname)
    hint = QUERY_HINTS.get("timeout" if status == 504 else code)
    return f"{text} ({hint})" if hint and hint not in text else text


def diff_summary(summary: dict[str, Any], counts: dict[str, Any]) -> list[str]:
    """restic diff's statistics in words: files and directories added/removed/changed, bytes."""
    added, removed = summary.get("added") or {}, summary.get("removed") or {}

    def n(d: dict[str, Any], k: str) -> int:
        v = d.get(k)
        return v if isinstance(v, int) else 0

    changed = summary.get("changed_files")
    changed = changed if isinstance(changed, int) else counts.get("modified", 0)
    lines = [f"files: +{n(added, 'files'):,} added · -{n(removed, 'files'):,} removed · {changed:,} changed",
             f"dirs: +{n(added, 'dirs'):,} added · -{n(removed, 'dirs'):,} removed",
             f"data: +{size(n(added, 'bytes'))} added · -{size(n(removed, 'bytes'))} removed"]
    others = n(added, "others") + n(removed, "others")
    if others:
        lines[1] += f" · {others:,} other (symlinks, devices) added or removed"
    return lines
