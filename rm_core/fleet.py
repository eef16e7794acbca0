"""Fleet-wide policies as the REST API takes and answers them (PUT /api/v1/fleet/policies/{name})."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from rm_core.api import CheckTask, MaintenanceTask
from rm_core.bounds import IncludeList, Name, PathList
from rm_core.cron_fields import Cron, Timezone, check_cron
from rm_core.model_base import Body, Out
from rm_core.enums import HostStatus
from rm_core.protocol import Retention


# PUT /api/v1/fleet/policies/{name}: the source group and schedule it upserts carry this name.
PolicyName = Annotated[Name, Field(min_length=1, max_length=200)]


class FleetSelector(Body):
    """Which hosts a fleet-wide change reaches; every given filter must match (none: all hosts)."""

    ids: list[str] | None = None
    status: HostStatus | None = None
    q: str | None = Field(default=None, max_length=253)


class FleetPolicyBody(Body):
    """A source group and a schedule of the same name, put on every selected host."""

    hosts: FleetSelector = FleetSelector()
    includes: IncludeList = Field(min_length=1)
    excludes: PathList = []
    tag: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.:=-]+$")
    retention: Retention = Retention()
    timezone: Timezone = "UTC"
    cron: Cron
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron_fires(cls, cron: str, info: ValidationInfo) -> str:
        return check_cron(cron, info.data.get("timezone", "UTC"))


class FleetPolicyResult(Out):
    name: str
    hosts: int
    pushed: int


class CronHosts(Out):
    """One cron expression in one time zone, and the hosts with an enabled schedule on it."""

    cron: str
    timezone: str
    host_ids: list[str]


class FleetCrons(Out):
    """Every host's enabled cron schedules (manual and disabled ones left out), grouped: what a
    client needs to compute each host's next run by its own clock, which a time sent once
    could not follow."""

    crons: list[CronHosts]
