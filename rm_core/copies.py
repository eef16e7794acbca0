"""The second copy of a source group (DESIGN.md §12): its policy, and how far the copy
repository lags behind the primary. Pure: the server and the console share these rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field, ValidationInfo, field_validator

from rm_core.cron_fields import Cron, Timezone, check_cron
from rm_core.model_base import Body
from rm_core.protocol import SnapshotInfo

DEFAULT_MAX_LAG_HOURS = 24


class CopyPolicy(Body):
    """`copy` of a source group. Enabled without a cron: a copy job follows every successful
    backup of the group. With a cron: copies run by that cron instead. `max_lag_hours`: how long
    the copy may miss a snapshot of the primary before the host shows the problem `copy`."""

    enabled: bool = False
    timezone: Timezone = "UTC"  # before cron: its check reads it
    cron: Cron | None = None
    max_lag_hours: int = Field(default=DEFAULT_MAX_LAG_HOURS, ge=1, le=24 * 366)

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str | None, info: ValidationInfo) -> str | None:
        return check_cron(cron, info.data.get("timezone", "UTC")) if cron is not None else cron


@dataclass(frozen=True)
class GroupCopy:
    """What the lag rule needs of one copy-enabled group."""

    tag: str
    max_lag: timedelta


@dataclass(frozen=True)
class CopyLag:
    behind_since: datetime | None  # the oldest primary snapshot the copy is still missing
    overdue_at: datetime | None  # when the first group's missing snapshot passes its max lag
    missing: int  # how many primary snapshots the copy is missing


def copy_lag(primary: Iterable[SnapshotInfo], copied: Iterable[SnapshotInfo], groups: Iterable[GroupCopy]) -> CopyLag:
    """How far the copy repository is behind, over the copy-enabled groups (by tag).

    A primary snapshot is missing when no copy snapshot is it (restic copy keeps the source's
    id as `original`) and it is newer than the newest copy of its group: a copy whose own
    retention keeps fewer snapshots than the primary is not behind for the old ones it let go.
    The lag runs from the oldest missing snapshot, not the newest: with hourly backups and a
    copy broken for three days, the newest missing snapshot is an hour old, the copy three
    days behind. With one snapshot missing (the usual case: a copy after each backup) the two
    readings agree."""
    copies = list(copied)
    present = {s.id for s in copies} | {s.original for s in copies if s.original}
    newest_copy: dict[str, datetime] = {}
    for s in copies:
        for tag in s.tags:
            if tag not in newest_copy or s.time > newest_copy[tag]:
                newest_copy[tag] = s.time
    snaps = list(primary)
    behind: datetime | None = None
    overdue: datetime | None = None
    missing: set[str] = set()
    for group in groups:
        floor = newest_copy.get(group.tag)
        late = [s for s in snaps if group.tag in s.tags and s.id not in present and (floor is None or s.time > floor)]
        if not late:
            continue
        missing.update(s.id for s in late)
        oldest = min(s.time for s in late)
        behind = oldest if behind is None else min(behind, oldest)
        due = oldest + group.max_lag
        overdue = due if overdue is None else min(overdue, due)
    return CopyLag(behind, overdue, len(missing))
