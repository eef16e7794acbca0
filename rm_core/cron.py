"""Cron helpers shared by the server (validation, previews) and the agent (firing)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter


class CronError(ValueError):
    pass


def validate(expr: str) -> None:
    """Raise CronError naming the problem when `expr` is not a 5-field cron expression."""
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(f"cron {expr!r} invalid: expected 5 fields (minute hour day month weekday), got {len(fields)}")
    try:
        croniter(expr)
    except (CroniterBadCronError, CroniterNotAlphaError, ValueError, KeyError) as exc:
        raise CronError(f"cron {expr!r} invalid: {exc}") from None


def next_fires(expr: str, tz: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next `count` fire times after `after`, evaluated in timezone `tz`."""
    validate(expr)
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError):
        raise CronError(f"unknown timezone {tz!r}") from None
    it = croniter(expr, after.astimezone(zone))
    try:
        return [it.get_next(datetime) for _ in range(count)]
    except CroniterBadDateError as exc:
        raise CronError(f"cron {expr!r} never fires: {exc}") from None


def previous_fire(expr: str, tz: str, before: datetime) -> datetime:
    """The latest fire time at or before `before`."""
    validate(expr)
    it = croniter(expr, before.astimezone(ZoneInfo(tz)))
    return it.get_prev(datetime)
