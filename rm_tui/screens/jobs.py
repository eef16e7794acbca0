"""Fleet-wide jobs: what runs now and what failed in the last 24 hours, live from events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from rm_core.enums import JobState
from rm_core.jobs import Job
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import age, plural, short_id
from rm_tui.screens.base import ApiScreen
from rm_tui.screens.job_log import JobLogScreen
from rm_tui.styles import job_state
from rm_tui.widgets.table import REPAINT_HZ, Column, ResourceTable

ACTIVE = (JobState.queued, JobState.dispatched, JobState.running)
FAILED = (JobState.failed, JobState.lost)
WINDOW = timedelta(hours=24)
COLUMNS = [Column("id", "Job", 8), Column("host", "Host", 24), Column("kind", "Kind", 8), Column("state", "State", 10),
           Column("when", "When", 9), Column("detail", "Progress / error", 0)]


def wanted(job: Job, now: datetime) -> bool:
    if job.state in ACTIVE:
        return True
    return job.state in FAILED and (job.finished_at or job.created_at) >= now - WINDOW


class FleetJobsScreen(ApiScreen):
    CSS_PATH = "fleet.tcss"
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("enter", "open_log", "Log", key_display="enter"),
        Binding("l", "open_log", "Log", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, hostnames: dict[str, str]) -> None:
        super().__init__()
        self.hostnames = hostnames  # host_id -> hostname, from the fleet
        self.jobs: dict[str, Job] = {}
        self.progress: dict[str, str] = {}
        self._changed: set[str] = set()
        self._order_stale = False
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="fleet-status")
        yield ResourceTable(COLUMNS, self.cells, id="jobs", empty="loading jobs…")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Fleet jobs"
        self.table.focus()
        self.load()
        self.set_interval(1 / REPAINT_HZ, self.flush)

    def on_screen_resume(self) -> None:
        self.table.focus()  # back from a job log: arrows work at once, on the same row

    @property
    def table(self) -> ResourceTable:
        return self.query_one("#jobs", ResourceTable)

    @work(exclusive=True, group="jobs-load")
    async def load(self) -> None:
        jobs: list[Job] = []
        try:
            for state in (*ACTIVE, *FAILED):
                jobs += await self.client.jobs(limit=1000, state=state.value)
        except ApiError as exc:
            self.report(exc, "Cannot load jobs")
            return
        now = datetime.now(timezone.utc)
        self.jobs = {j.id: j for j in jobs if wanted(j, now)}
        self.loaded = True
        self.table.empty = "nothing running and no failures in the last 24 hours"
        self.show_rows()

    def order(self) -> list[str]:
        """Running first, newest first; then the failures, newest first."""
        def key(j: Job) -> tuple[bool, float, str]:
            return (j.state not in ACTIVE, -(j.finished_at or j.started_at or j.created_at).timestamp(), j.id)
        return [j.id for j in sorted(self.jobs.values(), key=key)]

    def cells(self, job_id: str) -> list[Text | str]:
        j = self.jobs[job_id]
        if j.state in ACTIVE:
            detail = Text(self.progress.get(job_id, ""))
            since = j.started_at or j.created_at
        else:
            detail = Text(j.error or "", style="red")
            since = j.finished_at or j.created_at
        return [short_id(j.id), self.hostnames.get(j.host_id, short_id(j.host_id)), j.kind.value,
                job_state(j), age(since) + " ago", detail]

    def show_rows(self) -> None:
        self._order_stale = False
        self.table.set_rows(self.order())
        self.table.invalidate(None)
        running = sum(1 for j in self.jobs.values() if j.state in ACTIVE)
        self.query_one("#fleet-status", Static).update(
            f"{plural(running, 'job')} running or queued  ·  "
            f"[red]{plural(len(self.jobs) - running, 'failure')}[/] in the last 24 hours")

    def flush(self) -> None:
        if self._order_stale:
            self.show_rows()
        elif self._changed:
            self.table.invalidate(self._changed)
            self.table.repaint_dirty()
        self._changed = set()

    def on_job_updated(self, message: m.JobUpdated) -> None:
        job = message.job
        if wanted(job, datetime.now(timezone.utc)):
            self._order_stale |= job.id not in self.jobs or self.jobs[job.id].state != job.state
            self.jobs[job.id] = job
            self._changed.add(job.id)
        elif self.jobs.pop(job.id, None) is not None:
            self.progress.pop(job.id, None)
            self._order_stale = True

    def on_job_progress(self, message: m.JobProgress) -> None:
        if message.job_id in self.jobs:
            pct = message.progress.get("percent")
            self.progress[message.job_id] = f"{pct:.0f}%" if isinstance(pct, (int, float)) else "running"
            self._changed.add(message.job_id)

    def on_events_connected(self, _: m.EventsConnected) -> None:
        if self.loaded:
            self.load()

    def action_open_log(self) -> None:
        self.open(self.table.cursor_key)

    def open(self, job_id: str | None) -> None:
        if job_id and job_id in self.jobs:
            job = self.jobs[job_id]
            self.app.push_screen(JobLogScreen(job, self.hostnames.get(job.host_id, short_id(job.host_id))))

    def action_reload(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()
