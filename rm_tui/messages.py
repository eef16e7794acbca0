"""Messages the app, screens and host tabs exchange (messages up, attributes down).

Events from the server's WebSocket are posted to every signed-in screen on the stack (the
fleet gets its kinds handed down instead: RmTui.broadcast); they do not bubble, so each
screen decides what it cares about and the app does not see them twice. The host screen
hands them on to its tabs (HostScreen.hand_down). The path is drawn in docs/tui.md."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from rm_core.api import AuditEntry, Host, Operator, RepoInfo, Schedule, Snapshot, SourceGroup
from rm_core.jobs import Job


class LoggedIn(Message):
    """The login screen signed in; the app moves on to the fleet."""

    def __init__(self, operator: Operator) -> None:
        super().__init__()
        self.operator = operator


class ScreenReady(Message):
    """A form is mounted with its first field focused: the keys typed while it opened may go
    on (RmTui.on_event held them)."""


class ServerEvent(Message):
    bubble = False


class EventsConnected(ServerEvent):
    """The events stream is (re)connected: anything shown may have missed changes."""


class EventsLost(ServerEvent):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class HostUpdated(ServerEvent):
    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host


class HostDeleted(ServerEvent):
    def __init__(self, host_id: str) -> None:
        super().__init__()
        self.host_id = host_id


class JobUpdated(ServerEvent):
    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job


class JobProgress(ServerEvent):
    """Best-effort progress of a running job (percent, bytes, files, eta)."""

    def __init__(self, host_id: str | None, job_id: str, progress: dict[str, Any]) -> None:
        super().__init__()
        self.host_id = host_id
        self.job_id = job_id
        self.progress = progress


class ScheduleUpdated(ServerEvent):
    """Versions are None when the server did not say (a fleet-wide push of an older server);
    crons (the host's enabled (cron, timezone) pairs) are None when unchanged (an agent's ack)."""

    def __init__(self, host_id: str, version: int | None, applied_version: int | None,
                 crons: list[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.host_id = host_id
        self.version = version
        self.applied_version = applied_version
        self.crons = crons


class AuditAppended(ServerEvent):
    def __init__(self, entry: AuditEntry) -> None:
        super().__init__()
        self.entry = entry


# ------------------------------------------------------------ host tabs (messages up)
# Each tab of the host screen (rm_tui/host_tabs/) owns its data and posts what the others
# show of it; HostScreen hands it down to them as attributes. These bubble (to the screen).


class GroupsChanged(Message):
    """The source groups tab (re)loaded or changed its groups: schedules and jobs name them."""

    def __init__(self, groups: dict[str, SourceGroup]) -> None:
        super().__init__()
        self.groups = groups


class SchedulesChanged(Message):
    """The schedules tab (re)loaded or changed its schedules: the overview lists the next runs."""

    def __init__(self, schedules: dict[str, Schedule]) -> None:
        super().__init__()
        self.schedules = schedules


class JobsChanged(Message):
    """The jobs tab's jobs, newest first: the overview shows the latest few."""

    def __init__(self, recent: list[Job]) -> None:
        super().__init__()
        self.recent = recent


class JobsStarted(Message):
    """Run now started these jobs: the jobs tab lists them, the screen opens the first one's log."""

    def __init__(self, jobs: list[Job]) -> None:
        super().__init__()
        self.jobs = jobs


class SnapshotsChanged(Message):
    """The snapshots tab (re)loaded: how many, and the newest (its files, for settings)."""

    def __init__(self, count: int, newest: Snapshot | None = None) -> None:
        super().__init__()
        self.count = count
        self.newest = newest


class RepoChanged(Message):
    """The settings tab (re)loaded the repository (None: none configured)."""

    def __init__(self, repo: RepoInfo | None) -> None:
        super().__init__()
        self.repo = repo


class HostRemoved(Message):
    """The settings tab deleted the host: the screen closes."""
