"""Repository key rotation as the REST API takes and shows it (DESIGN.md §12)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

from pydantic import Field

from rm_core.enums import RepoTarget
from rm_core.fleet import FleetSelector
from rm_core.jobs import Job
from rm_core.model_base import Body, Out

# adding -> committed -> done; adding -> rolling_back -> rolled_back
ACTIVE_STATES = ("adding", "rolling_back", "committed")


class RotateKeyBody(Body):
    repo: RepoTarget = RepoTarget.primary  # the copy repository has a key of its own
    # true: the old key stays (a second way in, removed by hand with `restic key remove`)
    keep_old_key: bool = False


class FleetRotateKeyBody(RotateKeyBody):
    hosts: FleetSelector = FleetSelector()


class KeyRotation(Out):
    id: str
    host_id: str
    repo: RepoTarget
    state: str
    keep_old_key: bool = False
    old_key_id: Optional[str] = None
    new_key_id: Optional[str] = None
    job_id: Optional[str] = None  # the phase job it waits for
    attempts: int = 0
    error: Optional[str] = None
    created_at: datetime
    updated_at: datetime


class RotationStarted(KeyRotation):
    """POST .../rotate-key: the rotation and the phase job it now waits for (the key add)."""

    job: Optional[Job] = None


class FleetRotation(Out):
    started: List[KeyRotation]
    skipped: List[Dict[str, Any]] = Field(default=[], description="{host_id, reason} of hosts not rotated")
