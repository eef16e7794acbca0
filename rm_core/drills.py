"""Restore drills of a source group as the REST API shows them: the policy an operator sets
and the drill resource (policy + the newest drill job)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from rm_core.cron_fields import Cron, Timezone, check_cron
from rm_core.model_base import Body, Out
from rm_core.enums import JobState
from rm_core.restore import DEFAULT_SAMPLE_FILES, DEFAULT_SAMPLE_MB


class DrillPolicy(Body):
    """A source group's restore drills: when (no cron: by hand only), how big a sample, and how
    old its last good drill may get before the group is flagged."""

    enabled: bool = True
    timezone: Timezone = "UTC"  # before cron: its check reads it
    cron: Cron | None = None
    sample_files: int = Field(default=DEFAULT_SAMPLE_FILES, ge=1, le=10_000)
    sample_mb: int = Field(default=DEFAULT_SAMPLE_MB, ge=1, le=100_000)
    max_age_hours: int | None = Field(default=None, ge=1, le=24 * 366)

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str | None, info: ValidationInfo) -> str | None:
        return check_cron(cron, info.data.get("timezone", "UTC")) if cron is not None else cron


class DrillLast(Out):
    """The group's newest drill job, whatever its state."""

    job_id: str
    state: JobState
    finished_at: datetime | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None


class Drill(DrillPolicy):
    """GET/PUT .../source-groups/{sid}/drill: the policy and the last drill."""

    source_group_id: str
    last: DrillLast | None = None
