"""The one clock: every default `now` in rm_core and rm_agent (tests pass their own)."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Aware UTC now (naive datetimes never leave this project's code)."""
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """An aware datetime as ISO 8601 in UTC, the one spelling stored and sent."""
    return dt.astimezone(timezone.utc).isoformat()
