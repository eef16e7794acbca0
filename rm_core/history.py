"""What an operator reads of a source group's past (REST models): the anomalies found, the
body that acknowledges them, the last backups with the anomaly lines (the console's plots),
and the fleet's repository growth."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

from pydantic import Field

from rm_core.model_base import Body, Out


class Anomaly(Out):
    id: str
    host_id: str
    source_group_id: str
    job_id: str
    detected_at: datetime
    measure: str  # files_changed | data_added | files_removed
    reason: str
    details: Dict[str, Any] = {}
    acknowledged_at: Optional[datetime] = None
    acknowledged_by: Optional[str] = None
    note: Optional[str] = None


class AcknowledgeBody(Body):
    """Which open anomalies of the host an operator has looked at (none named: all of them)."""

    ids: Optional[List[str]] = Field(default=None, min_length=1, max_length=1000)
    source_group_id: Optional[str] = Field(default=None, max_length=64)
    note: Optional[str] = Field(default=None, max_length=2000)


class HistoryRun(Out):
    """One successful backup of the group, oldest first in a history."""

    job_id: str
    finished_at: Optional[datetime] = None
    state: str
    duration: Optional[float] = None  # seconds, restic's total_duration
    data_added: Optional[int] = None
    files_changed: Optional[int] = None  # files new + files changed
    total_files: Optional[int] = None
    repo_size: Optional[int] = None  # the repository's size right after it
    anomaly: Optional[str] = None  # the reason, when this backup was flagged


class GroupHistory(Out):
    """GET .../source-groups/{gid}/history: the last backups and, per measure, the line past
    which the next backup is an anomaly (none while fewer than 3 backups are known)."""

    source_group_id: str
    runs: List[HistoryRun]
    lines: Dict[str, float] = {}


class HostGrowth(Out):
    host_id: str
    hostname: str
    size: Optional[int] = None  # the newest reported repository size
    size_before: Optional[int] = None  # the oldest size inside the window
    growth: Optional[int] = None  # bytes: size - size_before
    points: List[int] = []  # the size at the end of each day of the window (days without a report repeat the last)


class FleetGrowth(Out):
    days: int
    hosts: List[HostGrowth]
