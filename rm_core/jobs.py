"""REST models of jobs: what starting one accepts (docs/api.md, POST /api/v1/hosts/{id}/jobs), a job as the API shows it,
and pages of its stored log. Shared by the server and the console."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, JsonValue, ValidationInfo, field_validator

from rm_core.api import READ_DATA_SUBSET
from rm_core.bounds import MAX_TIMEOUT_SECONDS, AbsolutePath, Kbps
from rm_core.enums import ActorKind, JobKind, JobState, RepoTarget
from rm_core.model_base import Body, Out
from rm_core.protocol import LogLine


# the kinds that may work on the copy repository (`repo: "copy"`); a copy job reads the
# primary and writes the copy whatever `repo` says
ON_COPY = frozenset({JobKind.init, JobKind.forget, JobKind.prune, JobKind.check, JobKind.unlock, JobKind.drill,
                     JobKind.snapshots, JobKind.stats, JobKind.restore})
NEEDS_GROUP = (JobKind.backup, JobKind.drill, JobKind.copy)


def _values(kinds: Iterable[JobKind]) -> list[JsonValue]:
    return [k.value for k in sorted(kinds)]


def _when_kind(kinds: tuple[JobKind, ...], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"required": ["kind"], "properties": {"kind": {"enum": _values(kinds)}}}, "then": then}


class JobBody(Body):
    # The rules across fields, stated for the document; the field validators below keep them.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        _when_kind(NEEDS_GROUP, {"required": ["source_group_id"], "properties": {"source_group_id": {"type": "string"}}}),
        _when_kind((JobKind.restore,), {"required": ["snapshot_id", "target"],
                                        "properties": {"snapshot_id": {"type": "string"}, "target": {"type": "string"}}}),
        {"if": {"required": ["from_host_id"], "properties": {"from_host_id": {"type": "string"}}},
         "then": {"properties": {"kind": {"const": JobKind.restore.value}}}},
        {"if": {"required": ["repo"], "properties": {"repo": {"const": RepoTarget.copy.value}}},
         "then": {"properties": {"kind": {"enum": _values(ON_COPY)}}}},
    ]})

    kind: JobKind
    # before source_group_id and the rest: their checks may read it
    repo: RepoTarget = RepoTarget.primary
    source_group_id: str | None = Field(default=None, min_length=1, validate_default=True)
    read_data_subset: str | None = Field(default=None, pattern=READ_DATA_SUBSET)
    remove_all: bool = False
    snapshot_id: str | None = Field(default=None, pattern=r"^([0-9a-f]{8,64}|latest)$", validate_default=True)
    paths: list[AbsolutePath] = Field(default=[], max_length=1000)
    # a directory typed by a person: a NUL in it was accepted (202) and failed on the host
    target: AbsolutePath | None = Field(default=None, validate_default=True)
    verify: bool = False  # restore: restic re-reads what it wrote and compares it with the snapshot
    # restore: a snapshot of this other host's repository (admin only; the machine died)
    from_host_id: str | None = Field(default=None, min_length=1, max_length=64, validate_default=True)
    limit_upload_kbps: Kbps | None = None
    limit_download_kbps: Kbps | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)

    # Field validators (not a model validator) so a 400 names the field that is missing.
    @field_validator("source_group_id")
    @classmethod
    def _backup_needs_group(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") in NEEDS_GROUP and not v:
            raise ValueError(f"source_group_id is required for a {info.data['kind'].value}")
        return v

    @field_validator("kind")
    @classmethod
    def _not_rotate_key(cls, v: JobKind) -> JobKind:
        if v == JobKind.rotate_key:
            raise ValueError("a key rotation starts with POST /api/v1/hosts/{id}/repo/rotate-key, which keeps "
                             "the new password and drives its phases")
        return v

    @field_validator("repo")
    @classmethod
    def _repo_for_kind(cls, v: RepoTarget, info: ValidationInfo) -> RepoTarget:
        kind = info.data.get("kind")
        if v == RepoTarget.copy and kind is not None and kind not in ON_COPY:
            raise ValueError(f"a {kind.value} job works on the primary repository; repo \"copy\" is for "
                             + ", ".join(sorted(k.value for k in ON_COPY)))
        return v

    @field_validator("snapshot_id")
    @classmethod
    def _restore_needs_snapshot(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == JobKind.restore and not v:
            raise ValueError("snapshot_id is required for a restore")
        return v

    @field_validator("target")
    @classmethod
    def _restore_needs_absolute_target(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == JobKind.restore and (not v or not v.startswith("/")):
            raise ValueError("target must be an absolute path for a restore")
        return v

    @field_validator("from_host_id")
    @classmethod
    def _only_for_restore(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("kind") not in (JobKind.restore, None):
            raise ValueError("from_host_id is only for a restore")
        if v is not None and info.data.get("repo") == RepoTarget.copy:
            raise ValueError("a restore from another host reads that host's primary repository; leave out repo")
        return v


class Job(Out):
    id: str
    host_id: str
    kind: JobKind
    state: JobState
    actor_kind: ActorKind
    actor_id: str | None = None
    schedule_id: str | None = None
    source_group_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    params: dict[str, Any] = {}
    log_dropped: int = 0
    # an operator cancelled it and the agent was told: it ends as `cancelled` once restic has
    # stopped (restic first ends its uploads in flight; under an upload limit that takes a while)
    cancel_requested: bool = False


class JobLogLine(LogLine):
    """One stored line of a job's log, as the agent sent it."""


class JobLogPage(Out):
    lines: list[JobLogLine]
    next_seq: int
    done: bool
