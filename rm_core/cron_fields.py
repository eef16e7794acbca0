"""Cron and time-zone fields of request bodies: one rule for every body that has them
(schedules, maintenance, drills, fleet policies, copies)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from rm_core.cron import CronError, next_fires, zone


def _timezone(tz: str) -> str:
    try:
        zone(tz)
    except CronError as exc:
        raise PydanticCustomError("timezone", "{problem}", {"problem": str(exc)}) from None
    return tz


def check_cron(expr: str, tz: str = "UTC") -> str:
    """The cron must parse and fire at least once ("0 3 31 2 *" never does)."""
    try:
        next_fires(expr, tz, datetime.now(timezone.utc), 1)
    except CronError as exc:
        raise PydanticCustomError("cron", "{problem}", {"problem": str(exc)}) from None
    return expr


Timezone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
