"""The one cron module: validation and previews (server), firing (agent), maintenance cadences.

Meaning of a fire time, everywhere: `previous_fire(at)` is the latest fire *at or before*
`at`, so at exactly 02:00 a `0 2 * * *` schedule has fired today (croniter's own
`get_prev` is strict and would say yesterday); `next_fire(after)` is strictly after.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
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


def is_valid(expr: str) -> bool:
    try:
        validate(expr)
    except CronError:
        return False
    return True


def zone(tz: str) -> ZoneInfo:
    """The IANA time zone `tz`; CronError naming it when unknown."""
    try:
        return ZoneInfo(tz)
    except (KeyError, ValueError, OSError):
        # ZoneInfoNotFoundError is a KeyError, "../x" a ValueError, and "America" or "Etc"
        # (tzdata folders, not zones) an IsADirectoryError.
        raise CronError(f"unknown timezone {tz!r}; use an IANA name such as Europe/Berlin") from None


def next_fires(expr: str, tz: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next `count` fire times strictly after `after`, evaluated in timezone `tz`."""
    return list(_next_fires(expr, tz, after, count))


def next_fire(expr: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`."""
    return _next_fires(expr, tz, after, 1)[0]


def previous_fire(expr: str, tz: str, at: datetime) -> datetime:
    """The latest fire time at or before `at` (a fire instant is its own previous fire)."""
    return _previous_fire(expr, tz, at)


# A ticker asks the same question for every host at one instant: 19k groups on one cron were
# 19k croniter evaluations (~0.4 ms each, 7.5 s of a server's loop every minute). Answers are
# pure functions of their arguments, so one per distinct (cron, zone, instant) is enough.
@lru_cache(maxsize=4096)
def _next_fires(expr: str, tz: str, after: datetime, count: int) -> tuple[datetime, ...]:
    validate(expr)
    it = croniter(expr, after.astimezone(zone(tz)))
    try:
        return tuple(it.get_next(datetime) for _ in range(count))
    except CroniterBadDateError as exc:
        raise CronError(f"cron {expr!r} never fires: {exc}") from None


@lru_cache(maxsize=4096)
def _previous_fire(expr: str, tz: str, at: datetime) -> datetime:
    validate(expr)
    local = at.astimezone(zone(tz))
    prev = croniter(expr, local).get_prev(datetime)
    # get_prev is strict: when `at` is itself a fire time, the fire after `prev` is `at`
    following = croniter(expr, prev).get_next(datetime)
    return following if following <= local else prev
