"""The jobs tab: the host's 50 latest jobs, live from job.updated and job.progress; enter opens a log."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding

from rm_core.api import Host, SourceGroup
from rm_core.jobs import Job
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import duration, short_id, size, when
from rm_tui.host_tabs.base import HostTab
from rm_tui.screens.job_log import JobLogScreen
from rm_tui.styles import job_state
from rm_tui.widgets.table import Column, ResourceTable

JOB_LIMIT = 50
JOB_COLUMNS = [Column("id", "Job", 8), Column("kind", "Kind", 9), Column("state", "State", 10),
               Column("group", "Source group", 16), Column("actor", "By", 8), Column("created", "Created", 16),
               Column("finished", "Finished", 16), Column("info", "Info", 0)]


def progress_text(p: dict[str, object]) -> str:
    """'42% · 1.2 GiB of 3.0 GiB · eta 5m' from a job.progress payload."""
    pct = p.get("percent")
    text = f"{pct:.0f}%" if isinstance(pct, (int, float)) else "running"
    done, total, eta = p.get("bytes_done"), p.get("bytes_total"), p.get("eta_seconds")
    if isinstance(done, int):
        text += f" · {size(done)}"
        if isinstance(total, int) and total:
            text += f" of {size(total)}"
    if isinstance(eta, (int, float)):
        text += f" · eta {duration(eta)}"
    return text


class JobsTab(HostTab):
    BINDINGS = [
        Binding("enter", "logs", "Log", key_display="enter"),
        Binding("l", "logs", "Log", show=False),
    ]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        self.jobs: dict[str, Job] = {}
        self.progress: dict[str, str] = {}
        self.groups: dict[str, SourceGroup] = {}  # the groups tab's, handed down by the screen (names)

    def compose(self) -> ComposeResult:
        yield ResourceTable(JOB_COLUMNS, self.cells, id="jobs-table", empty="no jobs yet")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="jobs-load")
    async def load(self) -> None:
        try:
            jobs = await self.client.jobs(host_id=self.host.id, limit=JOB_LIMIT)
        except ApiError as exc:
            self.report(exc, "Cannot load jobs")
            return
        if not self.is_mounted:
            return  # the screen closed while this loaded
        self.jobs = {j.id: j for j in jobs}
        self.loaded = True
        self.render_rows()

    def set_groups(self, groups: dict[str, SourceGroup]) -> None:
        self.groups = groups
        if (table := self.table) is not None:
            table.invalidate(None)

    def cells(self, job_id: str) -> list[Text | str]:
        job = self.jobs[job_id]
        group = self.groups.get(job.source_group_id or "")
        info = self.progress.get(job.id, "") if not job.state.terminal else (job.error or "")
        if job.state.terminal and job.exit_code is not None and not info:
            info = f"exit {job.exit_code}"
        return [short_id(job.id), job.kind.value, job_state(job),
                group.name if group else "—", job.actor_kind.value, when(job.created_at), when(job.finished_at),
                info]

    def render_rows(self) -> None:
        """Newest first; the cursor stays on its job when new ones arrive above it."""
        table = self.table
        if table is None:
            return  # the tab is being taken down
        table.set_rows(sorted(self.jobs, reverse=True)[:JOB_LIMIT])
        table.invalidate(None)
        self.post_message(m.JobsChanged([self.jobs[k] for k in table.keys]))

    def add(self, jobs: list[Job]) -> None:
        """Jobs this console just started (run now): listed at once, the cursor on the first."""
        for job in jobs:
            self.jobs[job.id] = job
        self.render_rows()
        if (table := self.table) is not None:
            table.move_to(jobs[0].id)

    def apply(self, event: m.ServerEvent) -> None:
        super().apply(event)
        if isinstance(event, m.JobUpdated):
            self.job_updated(event.job)
        elif isinstance(event, m.JobProgress) and event.job_id in self.jobs:
            self.progress[event.job_id] = progress_text(event.progress)
            if (table := self.table) is not None:
                table.invalidate([event.job_id])
                table.repaint_dirty()

    def job_updated(self, job: Job) -> None:
        known = job.id in self.jobs
        self.jobs[job.id] = job
        table = self.table
        if table is None:
            return  # the tab is being taken down
        if known and job.id in table.index:
            table.invalidate([job.id])
            table.repaint_dirty()
            self.post_message(m.JobsChanged([self.jobs[k] for k in table.keys]))
        else:
            self.render_rows()

    def action_logs(self) -> None:
        job_id = self.selected()
        if job_id is None:
            self.notify("No job selected", severity="warning")
            return
        self.app.push_screen(JobLogScreen(self.jobs[job_id], self.host.hostname))
