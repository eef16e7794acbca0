"""Cron and time-zone fields of request bodies: one rule for every body that has them
(schedules, maintenance, drills, fleet policies, copies)."""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from rm_core.bounds import Named, States
from rm_core.cron import CRON_PATTERN, NEVER_FIRES_PATTERN, CronError, next_fires, zone


@functools.cache
def timezones() -> frozenset[str]:
    """The IANA names a body may give: the zones this machine's tz database lists."""
    return frozenset(zoneinfo.available_timezones())


def _timezone(tz: str) -> str:
    try:
        zone(tz)
        if tz not in timezones():  # loadable but not a zone (posixrules) or not listed
            raise CronError(f"unknown timezone {tz!r}; use an IANA name such as Europe/Berlin")
    except CronError as exc:
        raise PydanticCustomError("timezone", "{problem}", {"problem": str(exc)}) from None
    return tz


_CRON_RE = re.compile(CRON_PATTERN)


def check_cron(expr: str, tz: str = "UTC") -> str:
    """The cron must parse, be written in the syntax CRON_PATTERN states, and fire at least
    once ("0 3 31 2 *" never does)."""
    try:
        next_fires(expr, tz, datetime.now(timezone.utc), 1)  # croniter's message names the bad field
    except CronError as exc:
        raise PydanticCustomError("cron", "{problem}", {"problem": str(exc)}) from None
    if not _CRON_RE.fullmatch(expr):
        raise PydanticCustomError("cron", "cron {expr!r}: write five fields one space apart, each *, */step, a value, "
                                          "a range a-b or a-b/step, or a comma list of them", {"expr": expr})
    return expr


Timezone = Annotated[str, Field(max_length=64), AfterValidator(_timezone),
                     Named("Timezone", lambda: {"type": "string", "enum": sorted(timezones())},
                           "An IANA time zone name, such as Europe/Berlin.")]
# check_cron decides (each body's validator calls it: it knows the time zone); this states it.
Cron = Annotated[str, Field(max_length=200),
                 States(pattern=CRON_PATTERN, description="5-field cron; it must fire at least once",
                        **{"not": {"pattern": NEVER_FIRES_PATTERN}})]
