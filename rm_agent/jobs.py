"""What a job is to the agent: the job, its result, the runner's settings, where events go."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from rm_core import restic as R
from rm_core.enums import ActorKind, JobKind, JobState


class JobEvents(Protocol):
    """Where a job's events go (the agent: outbox + socket)."""

    def started(self, job: Job) -> None: ...
    def log(self, job: Job, stream: str, text: str) -> None: ...
    def progress(self, job: Job, progress: R.Progress) -> None: ...
    def finished(self, job: Job, result: JobResult) -> None: ...
    def report(self, type_: str, payload: dict[str, Any]) -> None: ...


@dataclass
class Job:
    job_id: str
    kind: JobKind
    params: dict[str, Any] = field(default_factory=dict)
    actor_kind: ActorKind | None = None
    schedule_id: str | None = None
    source_group_id: str | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: datetime | None = None
    pid: int | None = None
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # agent lines from before the start


@dataclass
class JobResult:
    state: JobState
    exit_code: int | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None


class JobFailed(Exception):
    """Ends a job kind early with this state and message (the runner turns it into a JobResult)."""

    def __init__(self, message: str, exit_code: int | None = None, state: JobState = JobState.failed) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.state = state


@dataclass
class RunnerSettings:
    restic_binary: str = "restic"
    tmp_dir: Path = Path("/tmp")
    allow_hooks: bool = False
    default_timeout: float = 24 * 3600
    cancel_grace: float = 30.0
    hook_timeout: float = 3600
    cache_dir: str | None = None
    # the live backup log: a progress line at most this often (and at 25/50/75 %) …
    progress_log_seconds: float = 10.0
    # … and at most this many of restic's warnings/errors per job, then one "N more" line
    max_error_lines: int = 200
