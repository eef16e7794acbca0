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


# ---------------------------------------------------------------- the cron syntax the REST API takes
# A strict subset of what croniter reads, written as one regular expression so the OpenAPI
# document states it (clients and schemathesis generate from it): five fields, one space
# apart; each a comma list of `*`, `*/step`, `v`, `v-w` or `v-w/step`, values in the field's
# range (a leading zero allowed), months and weekdays also by English three-letter names.
# Agents still fire on croniter's full syntax: schedules written before are unaffected.


def _ci(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
_STEP = "[1-9][0-9]?"
_VALUES = (
    "0?[0-9]|[1-5][0-9]",  # minute 0-59
    "0?[0-9]|1[0-9]|2[0-3]",  # hour 0-23
    "0?[1-9]|[12][0-9]|3[01]",  # day of month 1-31
    "0?[1-9]|1[0-2]|" + "|".join(_ci(m) for m in _MONTHS),  # month 1-12
    "0?[0-7]|" + "|".join(_ci(d) for d in _DAYS),  # day of week 0-7 (0 and 7: Sunday)
)


def _field(values: str) -> str:
    item = f"(\\*(/{_STEP})?|({values})(-({values})(/{_STEP})?)?)"
    return f"{item}(,{item})*"


CRON_PATTERN = "^" + " ".join(_field(v) for v in _VALUES) + "$"
# The plainest crons that never fire (the 30th or 31st of months without one, any weekday);
# the server refuses them and every other cron that never fires (check_cron asks croniter).
_NO_30 = "0?2|" + _ci("feb")
_NO_31 = "0?2|0?4|0?6|0?9|11|" + "|".join(_ci(m) for m in ("feb", "apr", "jun", "sep", "nov"))
NEVER_FIRES_PATTERN = (f"^[^ ]+ [^ ]+ ((30|31)(,(30|31))* ({_NO_30})(,({_NO_30}))*"
                       f"|31(,31)* ({_NO_31})(,({_NO_31}))*) \\*$")
