"""REST request and response models shared by the server and the TUI (docs/api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rm_core.anomaly import AnomalyPolicy
from rm_core.bounds import IncludeList, Kbps, Name, PathList, RepoUrl
from rm_core.copies import CopyPolicy
# the bodies' cron rules and model bases, importable from here as before
from rm_core.cron_fields import Cron, Timezone as Timezone, check_cron as check_cron
from rm_core.enums import HostStatus, JobState, Role
from rm_core.model_base import Body as Body, Out as Out
from rm_core.protocol import Retention, SnapshotInfo


# ---------------------------------------------------------------- auth + operators

USERNAME = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
PASSWORD = Field(min_length=8, max_length=1024)


class BootstrapBody(Body):
    token: str = Field(min_length=1)
    username: str = USERNAME
    password: str = PASSWORD


class LoginBody(Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Operator(Out):
    id: str
    username: str
    role: Role
    created_at: datetime
    disabled: bool = False


class LoginResponse(Out):
    token: str
    operator: Operator


class OperatorCreate(Body):
    username: str = USERNAME
    password: str = PASSWORD
    role: Role


class OperatorPatch(Body):
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    role: Role | None = None
    disabled: bool | None = None


# ---------------------------------------------------------------- enrollment + hosts


class RepoBody(Body):
    # The one rule across fields, stated for the document: _one_password_source keeps it.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"not": {
        "required": ["password", "generate_password"],
        "properties": {"password": {"type": "string"}, "generate_password": {"const": True}}}})

    url: RepoUrl
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    generate_password: bool = False
    rest_user: Name | None = Field(default=None, max_length=256)
    rest_password: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _one_password_source(self) -> "RepoBody":
        if self.password and self.generate_password:
            raise ValueError("give either password or generate_password, not both")
        return self


class EnrollmentTokenCreate(Body):
    name: Name | None = Field(default=None, max_length=200)
    ttl_seconds: int = Field(default=3600, ge=60, le=30 * 86400)
    max_uses: int = Field(default=1, ge=1, le=10000)
    # They become the host's first source group: the same rules as its includes.
    initial_paths: IncludeList = []
    repo: RepoBody | None = None


class EnrollmentToken(Out):
    id: str
    name: str | None = None
    created_at: datetime
    expires_at: datetime
    max_uses: int
    uses: int
    initial_paths: list[str] = []
    has_repo: bool = False


class EnrollmentTokenCreated(EnrollmentToken):
    token: str
    install_command: str


class EnrollBody(Body):
    token: str = Field(min_length=1)
    hostname: Name = Field(min_length=1, max_length=253)
    os: Name = Field(default="", max_length=200)
    arch: Name = Field(default="", max_length=64)
    agent_version: Name = Field(default="", max_length=64)


class EnrollResponse(Out):
    host_id: str
    agent_token: str


class LastBackup(Out):
    job_id: str
    state: JobState
    finished_at: datetime | None = None


class LastVerified(Out):
    """The newest finished restore drill of a host (the fleet's "last verified")."""

    job_id: str
    state: JobState
    finished_at: datetime | None = None
    source_group_id: str | None = None
    files: int | None = None
    bytes: int | None = None
    mismatches: int | None = None


class Host(Out):
    id: str
    hostname: str
    status: HostStatus
    last_seen: datetime | None = None
    os: str = ""
    arch: str = ""
    agent_version: str = ""
    restic_version: str | None = None
    schedule_version: int = 0
    applied_schedule_version: int = 0
    stale: bool = False
    last_backup: LastBackup | None = None
    created_at: datetime | None = None
    repo_size: int | None = None
    initial_paths: list[str] = []
    last_verified: LastVerified | None = None
    # a source group of this host has had no good restore drill for longer than its policy allows
    drill_overdue: bool = False
    # the second copy (rm_core/copies.py): a copy-enabled group and copy credentials …
    copy_enabled: bool = False
    # … the oldest primary snapshot the copy still misses (None: up to date), and when that
    # passes the group's max_lag_hours (the console's problem `copy`)
    copy_behind_since: datetime | None = None
    copy_overdue_at: datetime | None = None
    # backups far outside their group's history not yet acknowledged (rm_core/anomaly.py), and
    # the newest one's reason ("41,203 files changed; usual 80–140")
    open_anomalies: int = 0
    anomaly: str | None = None
    anomaly_at: datetime | None = None


class HostPatch(Body):
    hostname: Name | None = Field(default=None, min_length=1, max_length=253)


class BandwidthBody(Body):
    upload_kbps: Kbps | None = None
    download_kbps: Kbps | None = None


class RepoInfo(Out):
    url: str
    key_fingerprint: str
    updated_at: datetime
    stats: dict[str, Any] | None = None
    has_admin_credentials: bool = False


class RepoPutResponse(RepoInfo):
    password: str | None = None  # only when generated, shown once
    htpasswd_line: str | None = None


# ---------------------------------------------------------------- source groups + schedules


class SourceGroupBody(Body):
    name: Name = Field(min_length=1, max_length=200)
    includes: IncludeList = Field(min_length=1)
    excludes: PathList = []
    tag: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.:=-]+$")
    retention: Retention = Retention()
    pre_hook: str | None = Field(default=None, max_length=4096)
    post_hook: str | None = Field(default=None, max_length=4096)
    copy_: CopyPolicy = Field(default=CopyPolicy(), alias="copy")  # "copy" would shadow BaseModel.copy
    anomaly: AnomalyPolicy = AnomalyPolicy()


class SourceGroup(Out):
    id: str
    host_id: str
    name: str
    includes: list[str]
    excludes: list[str]
    tag: str
    retention: Retention
    pre_hook: str | None = None
    post_hook: str | None = None
    copy_: CopyPolicy = Field(default=CopyPolicy(), alias="copy")
    anomaly: AnomalyPolicy = AnomalyPolicy()


class ScheduleBody(Body):
    # The rule across fields, stated for the document; _cron_unless_manual keeps it.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"required": ["manual"], "properties": {"manual": {"const": True}}},
        "then": {"properties": {"cron": {"type": "null"}}},
        "else": {"required": ["cron"], "properties": {"cron": {"type": "string"}}}})

    # manual and timezone come before cron: its check reads them.
    name: Name = Field(min_length=1, max_length=200)
    manual: bool = False
    timezone: Timezone = "UTC"
    cron: Cron | None = Field(default=None, validate_default=True)
    enabled: bool = True
    source_group_ids: list[str] = Field(min_length=1, json_schema_extra={"uniqueItems": True})

    @field_validator("source_group_ids")
    @classmethod
    def _each_group_once(cls, ids: list[str]) -> list[str]:
        if len(set(ids)) != len(ids):
            raise PydanticCustomError("unique", "source_group_ids lists a group twice")
        return ids

    @field_validator("cron")
    @classmethod
    def _cron_unless_manual(cls, cron: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("manual"):
            if cron is not None:
                raise PydanticCustomError("cron", "a manual schedule has no cron; drop cron or set manual to false")
            return cron
        if not cron:
            raise PydanticCustomError("cron", "cron is required unless the schedule is manual")
        return check_cron(cron, info.data.get("timezone", "UTC"))


class Schedule(Out):
    id: str
    host_id: str
    name: str
    cron: str | None
    timezone: str
    enabled: bool
    manual: bool
    source_group_ids: list[str]
    next_run: datetime | None = None


class ScheduleList(Out):
    version: int
    applied_version: int
    schedules: list[Schedule]


class MaintenanceTask(Body):
    # The rule across fields, stated for the document; _cron_when_enabled keeps it.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"required": ["enabled"], "properties": {"enabled": {"const": True}}},
        "then": {"required": ["cron"], "properties": {"cron": {"type": "string"}}}})

    # enabled comes before cron: its check reads it. Maintenance crons run in UTC.
    enabled: bool = False
    cron: Cron | None = Field(default=None, validate_default=True)

    @field_validator("cron")
    @classmethod
    def _cron_when_enabled(cls, cron: str | None, info: ValidationInfo) -> str | None:
        if cron is None:
            if info.data.get("enabled"):
                raise PydanticCustomError("cron", "cron is required when the task is enabled")
            return cron
        return check_cron(cron)


# restic check --read-data-subset: a percentage or n/m (ASCII digits: restic reads no others)
READ_DATA_SUBSET = r"^([0-9]+(\.[0-9]+)?%|[0-9]+/[0-9]+)$"


class CheckTask(MaintenanceTask):
    read_data_subset: str | None = Field(default=None, pattern=READ_DATA_SUBSET)


class Maintenance(Body):
    forget: MaintenanceTask = MaintenanceTask()
    prune: MaintenanceTask = MaintenanceTask()
    check: CheckTask = CheckTask()


class Snapshot(SnapshotInfo):
    """A snapshot as the API shows it: what the agent reported."""


class AuditEntry(Out):
    id: int
    ts: datetime
    actor_kind: str
    actor_id: str | None = None
    actor_name: str | None = None
    action: str
    target: str | None = None
    details: dict[str, Any] = {}


class ServerSettings(Body):
    webhook_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")


class ErrorBody(Out):
    """The `error` of every failed answer: `{"error": {code, message, details}}`."""

    code: str
    message: str
    details: dict[str, Any] = {}

    @classmethod
    def from_envelope(cls, body: Any, status: int) -> ErrorBody:
        """The error a failed answer carries; one naming the HTTP status when it carries none
        (a proxy's HTML page, a truncated body)."""
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return cls(code=str(err.get("code") or "error"), message=str(err.get("message") or f"HTTP {status}"),
                       details=err.get("details") if isinstance(err.get("details"), dict) else {})
        return cls(code="http_error", message=f"server answered HTTP {status}")


EventType = Literal["host.updated", "job.updated", "job.progress", "job.log", "schedule.updated", "audit.appended"]
