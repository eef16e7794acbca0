"""One host: overview, source groups, schedules and recent jobs; run now; open logs."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from rm_core.api import Host, Job, Schedule, SourceGroup
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import age, short_id, size, when
from rm_tui.screens.fleet import STATE_STYLE, STATUS_STYLE

JOB_LIMIT = 50


class HostScreen(Screen[None]):
    CSS_PATH = "host.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "run_now", "Run now"),
        Binding("l", "logs", "Logs"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host
        self.groups: dict[str, SourceGroup] = {}
        self.schedules: dict[str, Schedule] = {}
        self.jobs: dict[str, Job] = {}
        self.progress: dict[str, str] = {}

    @property
    def client(self):
        return self.app.client  # type: ignore[attr-defined]

    @property
    def readonly(self) -> bool:
        """--readonly, or signed in as a viewer: either way nothing here may change anything."""
        return bool(getattr(self.app, "readonly", False)) or self.client.role == "viewer"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="overview")
        with Horizontal(id="config"):
            with Vertical():
                yield Label("Source groups", classes="section-title")
                groups: DataTable[str] = DataTable(id="groups", cursor_type="row")
                groups.add_column("Name", key="name")
                groups.add_column("Paths", key="paths")
                groups.add_column("Tag", key="tag")
                yield groups
            with Vertical():
                yield Label("Schedules", classes="section-title")
                schedules: DataTable[str] = DataTable(id="schedules", cursor_type="row")
                schedules.add_column("Name", key="name")
                schedules.add_column("When", key="cron")
                schedules.add_column("Next run", key="next")
                yield schedules
        yield Label("Recent jobs", classes="section-title")
        jobs: DataTable[Text | str] = DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        for key, label in (("id", "Job"), ("kind", "Kind"), ("state", "State"), ("group", "Source group"),
                           ("actor", "By"), ("created", "Created"), ("finished", "Finished"), ("info", "Info")):
            jobs.add_column(label, key=key)
        yield jobs
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.host.hostname
        self.render_overview()
        self.query_one("#groups", DataTable).focus()
        self.load()
        self.set_interval(15, self.render_overview)  # "last seen 5s ago" ages locally

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_now" and self.readonly:
            return False  # hidden from the footer and refused
        return True

    @work(exclusive=True, group="host-load")
    async def load(self) -> None:
        try:
            host = await self.client.host(self.host.id)
            groups = await self.client.source_groups(self.host.id)
            listing = await self.client.schedules(self.host.id)
            jobs = await self.client.jobs(host_id=self.host.id, limit=JOB_LIMIT)
        except ApiError as exc:
            self.app.report(exc, "Cannot load host")  # type: ignore[attr-defined]
            return
        self.host = host
        self.groups = {g.id: g for g in groups}
        self.schedules = {s.id: s for s in listing.schedules}
        self.jobs = {j.id: j for j in jobs}
        self.render_overview()
        self.render_groups()
        self.render_schedules()
        self.render_jobs()

    # ------------------------------------------------------------ rendering

    def render_overview(self) -> None:
        h = self.host
        status = f"[{STATUS_STYLE.get(h.status, '')}]{h.status.value}[/]"
        seen = f"last seen {age(h.last_seen)} ago" if h.last_seen else "never seen"
        lines = [
            f"[b]{h.hostname}[/]  {status}  {seen}  ·  {h.os} {h.arch}  ·  agent {h.agent_version or '?'}"
            f"  ·  restic {h.restic_version or '?'}",
        ]
        drift = (f"[yellow]schedule v{h.schedule_version} not yet applied (agent has "
                 f"v{h.applied_schedule_version})[/]" if h.schedule_version != h.applied_schedule_version
                 else f"schedule v{h.schedule_version} applied")
        lb = h.last_backup
        last = (f"last backup [{STATE_STYLE.get(lb.state, '')}]{lb.state.value}[/] {age(lb.finished_at)} ago"
                if lb else "no backup yet")
        stale = "  ·  [bold reverse red] STALE [/]" if h.stale else ""
        lines.append(f"{last}  ·  repo {size(h.repo_size)}  ·  {drift}{stale}")
        if self.readonly:
            lines.append("[dim]read-only console: actions are disabled[/]")
        self.query_one("#overview", Static).update("\n".join(lines))

    def render_groups(self) -> None:
        table = self.query_one("#groups", DataTable)
        table.clear()
        for g in sorted(self.groups.values(), key=lambda g: g.name.lower()):
            table.add_row(g.name, ", ".join(g.includes), g.tag, key=g.id)

    def render_schedules(self) -> None:
        table = self.query_one("#schedules", DataTable)
        table.clear()
        for s in sorted(self.schedules.values(), key=lambda s: s.name.lower()):
            cron = "manual" if s.manual else (s.cron or "")
            if not s.enabled:
                cron += " (disabled)"
            table.add_row(s.name, cron, when(s.next_run), key=s.id)

    def job_cells(self, job: Job) -> list[Text | str]:
        group = self.groups.get(job.source_group_id or "")
        info = self.progress.get(job.id, "") if not job.state.terminal else (job.error or "")
        if job.state.terminal and job.exit_code is not None and not info:
            info = f"exit {job.exit_code}"
        return [short_id(job.id), job.kind.value, Text(job.state.value, style=STATE_STYLE.get(job.state, "")),
                group.name if group else "—", job.actor_kind.value, when(job.created_at), when(job.finished_at),
                info]

    def render_jobs(self) -> None:
        table = self.query_one("#jobs", DataTable)
        selected = self.selected("#jobs")
        table.clear()
        for job in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)[:JOB_LIMIT]:
            table.add_row(*self.job_cells(job), key=job.id)
        if selected in self.jobs:
            table.move_cursor(row=table.get_row_index(selected))

    def selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # ------------------------------------------------------------ events

    def on_events_connected(self, _: m.EventsConnected) -> None:
        self.load()

    def on_host_updated(self, message: m.HostUpdated) -> None:
        if message.host.id == self.host.id:
            self.host = message.host
            self.render_overview()

    def on_host_deleted(self, message: m.HostDeleted) -> None:
        if message.host_id == self.host.id:
            self.notify(f"{self.host.hostname} was removed from the fleet", severity="warning")
            self.dismiss()

    def on_schedule_updated(self, message: m.ScheduleUpdated) -> None:
        if message.host_id == self.host.id:
            self.load()  # groups or schedules changed: one host's worth of data, not a row poll

    def on_job_updated(self, message: m.JobUpdated) -> None:
        job = message.job
        if job.host_id != self.host.id:
            return
        self.jobs[job.id] = job
        table = self.query_one("#jobs", DataTable)
        if job.id in table.rows:
            for key, value in zip(("id", "kind", "state", "group", "actor", "created", "finished", "info"),
                                  self.job_cells(job)):
                table.update_cell(job.id, key, value, update_width=True)
        else:
            self.render_jobs()

    def on_job_progress(self, message: m.JobProgress) -> None:
        if message.job_id not in self.jobs:
            return
        p = message.progress
        pct = p.get("percent")
        text = f"{pct:.0f}%" if isinstance(pct, (int, float)) else "running"
        if p.get("bytes_done") is not None:
            text += f" · {size(p['bytes_done'])}"
            if p.get("bytes_total"):
                text += f" of {size(p['bytes_total'])}"
        if isinstance(p.get("eta_seconds"), (int, float)):
            text += f" · eta {int(p['eta_seconds'])}s"
        self.progress[message.job_id] = text
        table = self.query_one("#jobs", DataTable)
        if message.job_id in table.rows:
            table.update_cell(message.job_id, "info", text, update_width=True)

    # ------------------------------------------------------------ actions

    def action_run_now(self) -> None:
        if self.readonly:
            self.notify("read-only console: run now is disabled", severity="warning")
            return
        if self.focused is self.query_one("#schedules", DataTable):
            sid = self.selected("#schedules")
            if sid:
                self.run_schedule(sid)
            else:
                self.notify("This host has no schedule to run", severity="warning")
            return
        gid = self.selected("#groups")
        if gid:
            self.run_group(gid)
        else:
            self.notify("This host has no source group to back up", severity="warning")

    @work(exclusive=True, group="run-now")
    async def run_group(self, group_id: str) -> None:
        name = self.groups[group_id].name if group_id in self.groups else group_id
        try:
            job = await self.client.run_source_group(self.host.id, group_id)
        except ApiError as exc:
            self.app.report(exc, f"Cannot back up {name}")  # type: ignore[attr-defined]
            return
        self.jobs[job.id] = job
        self.render_jobs()
        self.notify(f"backup of {name} {job.state.value} (job {short_id(job.id)})")

    @work(exclusive=True, group="run-now")
    async def run_schedule(self, schedule_id: str) -> None:
        name = self.schedules[schedule_id].name if schedule_id in self.schedules else schedule_id
        try:
            jobs = await self.client.run_schedule(self.host.id, schedule_id)
        except ApiError as exc:
            self.app.report(exc, f"Cannot run {name}")  # type: ignore[attr-defined]
            return
        for job in jobs:
            self.jobs[job.id] = job
        self.render_jobs()
        self.notify(f"schedule {name}: {len(jobs)} job(s) started")

    def action_logs(self) -> None:
        from rm_tui.screens.job_log import JobLogScreen

        job_id = self.selected("#jobs")
        if job_id is None:
            self.notify("No job selected", severity="warning")
            return
        self.app.push_screen(JobLogScreen(self.jobs[job_id], self.host.hostname))

    @on(DataTable.RowSelected, "#jobs")
    def job_selected(self) -> None:
        self.action_logs()

    def action_reload(self) -> None:
        self.load()
