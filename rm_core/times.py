"""The one clock: every default `now` in rm_core and rm_agent (tests pass their own)."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Aware UTC now (naive datetimes never leave this project's code)."""
    return datetime.now(timezone.utc)
