"""The named states and kinds every part of the product agrees on."""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """`enum.StrEnum` (3.11+) for the agent's Python 3.9 floor: a member is its value in
    str(), format() and f-strings, and compares equal to it."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class JobState(StrEnum):
    queued = "queued"
    dispatched = "dispatched"
    running = "running"
    succeeded = "succeeded"
    warning = "warning"
    failed = "failed"
    cancelled = "cancelled"
    lost = "lost"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.succeeded, JobState.warning, JobState.failed, JobState.cancelled, JobState.lost}
)
ACTIVE_STATES = frozenset({JobState.queued, JobState.dispatched, JobState.running})


class JobKind(StrEnum):
    init = "init"
    backup = "backup"
    forget = "forget"
    prune = "prune"
    check = "check"
    unlock = "unlock"
    restore = "restore"
    stats = "stats"
    snapshots = "snapshots"
    drill = "drill"  # restore a random sample of a source group's latest snapshot and check it
    copy = "copy"  # restic copy of a source group's snapshots into the host's copy repository
    rotate_key = "rotate_key"  # one phase of a repository key rotation (add / remove / rollback)


class ActorKind(StrEnum):
    user = "user"
    schedule = "schedule"
    system = "system"
    agent = "agent"


class HostStatus(StrEnum):
    pending = "pending"
    online = "online"
    offline = "offline"


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    def allows(self, needed: "Role") -> bool:
        """True when this role may do what `needed` may do."""
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2}


class CredentialSlot(StrEnum):
    repo = "repo"
    admin = "admin"
    copy = "copy"  # the second repository a source group's snapshots are copied into (feature "copy")


class RepoTarget(StrEnum):
    """Which of a host's repositories a job works on (`repo` of a job body)."""

    primary = "primary"
    copy = "copy"
