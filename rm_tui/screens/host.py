"""One host as tabs: overview · source groups · schedules · jobs · snapshots · maintenance ·
settings. Run now, logs, and (unless read-only) new / edit / delete on the tab in front."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane, Tabs

from rm_core.api import Host, Maintenance, RepoInfo, Schedule, Snapshot, SourceGroup
from rm_core.enums import JobKind
from rm_core.jobs import Job
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import age, duration, plural, short_id, size, when
from rm_tui.screens.base import ApiScreen
from rm_tui.styles import STATE_STYLE, STATUS_STYLE
from rm_tui.widgets.table import Column, ResourceTable
from rm_tui.screens.host_groups import GroupsSchedulesTabs, next_run
from rm_tui.screens.host_settings import SettingsTabs
from rm_tui.screens.host_snapshots import HINT, SNAPSHOT_COLUMNS, SnapshotsTab

JOB_LIMIT = 50
TABS = ("overview", "groups", "schedules", "jobs", "snapshots", "maintenance", "settings")
TAB_TITLES = ("Overview", "Source groups", "Schedules", "Jobs", "Snapshots", "Maintenance", "Settings")
JOB_COLUMNS = [Column("id", "Job", 8), Column("kind", "Kind", 9), Column("state", "State", 10),
               Column("group", "Source group", 16), Column("actor", "By", 8), Column("created", "Created", 16),
               Column("finished", "Finished", 16), Column("info", "Info", 0)]
# Narrow enough that the column taking the rest (paths, groups) keeps room at 80-90 columns.
GROUP_COLUMNS = [Column("name", "Name", 16), Column("paths", "Paths", 0), Column("excludes", "Excludes", 16),
                 Column("tag", "Tag", 10), Column("keep", "Keep", 14)]
SCHEDULE_COLUMNS = [Column("name", "Name", 16), Column("cron", "When", 22), Column("tz", "Timezone", 14),
                    Column("groups", "Groups", 0), Column("next", "Next run", 16)]
# Which tabs each contextual action works on.
ACTION_TABS = {
    "run_now": {"groups", "schedules"},
    "new": {"groups", "schedules"},
    "edit": {"groups", "schedules", "maintenance", "settings"},
    "delete": {"groups", "schedules", "settings"},
    "repo": {"settings"},
    "admin_creds": {"settings"},
    "logs": {"jobs"},
    "browse": {"snapshots"},
    "diff_from": {"snapshots"},
    "diff_to": {"snapshots"},
}


class HostScreen(GroupsSchedulesTabs, SettingsTabs, SnapshotsTab, ApiScreen):
    CSS_PATH = "host.tcss"
    MUTATING = frozenset({"run_now", "new", "edit", "delete", "repo", "admin_creds"})
    BINDINGS = [
        Binding("escape", "back", "Back"),
        # tab always means "next tab" here: focus stays on the table of the tab in front
        # (before, tab moved focus between the tab bar and the table, one or the other)
        Binding("tab", "cycle_tab(1)", "Next tab", show=False),
        Binding("shift+tab", "cycle_tab(-1)", "Previous tab", show=False),
        Binding("r", "run_now", "Run now"),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("ctrl+d", "delete", "Delete"),
        Binding("p", "repo", "Repository"),
        Binding("a", "admin_creds", "Admin credentials"),
        Binding("l", "logs", "Logs"),
        Binding("b", "browse", "Browse snapshot"),
        # one key, two steps: the footer says which one comes next
        Binding("d", "diff_from", "Diff from here"),
        Binding("d", "diff_to", "Diff to here"),
        Binding("ctrl+r", "reload", "Reload"),
        *(Binding(str(i + 1), f"tab('{tab}')", f"{title} tab", show=False)
          for i, (tab, title) in enumerate(zip(TABS, TAB_TITLES))),
    ]

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host
        self.groups: dict[str, SourceGroup] = {}
        self.schedules: dict[str, Schedule] = {}
        self.jobs: dict[str, Job] = {}
        self.progress: dict[str, str] = {}
        self.snapshots: list[Snapshot] = []
        self.snapshot_by_id: dict[str, Snapshot] = {}
        self.diff_from: str | None = None
        self.maintenance: Maintenance | None = None
        self.bandwidth: dict[str, Any] | None = None
        self.repo: RepoInfo | None = None
        self.settings_loaded = False
        self.loaded = False  # the first full load finished (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            with TabPane("Overview", id="overview"):
                with VerticalScroll():
                    yield Static(id="overview-text")
                    yield Static(id="overview-more")
            with TabPane("Source groups", id="groups"):
                yield ResourceTable(GROUP_COLUMNS, self.group_cells, id="groups-table", empty="loading…")
            with TabPane("Schedules", id="schedules"):
                yield ResourceTable(SCHEDULE_COLUMNS, self.schedule_cells, id="schedules-table", empty="loading…")
            with TabPane("Jobs", id="jobs"):
                yield ResourceTable(JOB_COLUMNS, lambda jid: self.job_cells(self.jobs[jid]), id="jobs-table",
                                    empty="no jobs yet")
            with TabPane("Snapshots", id="snapshots"):
                yield ResourceTable(SNAPSHOT_COLUMNS, self.snapshot_cells, id="snapshots-table", empty="loading…")
                yield Static(HINT, id="snapshots-hint", classes="tab-hint")
            with TabPane("Maintenance", id="maintenance"):
                yield Static("loading…", id="maintenance-text", classes="pane-text")
            with TabPane("Settings", id="settings"):
                yield Static("loading…", id="settings-text", classes="pane-text")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.host.hostname
        self.render_overview()
        self.load()
        self.load_settings()
        self.set_interval(15, self.render_overview)  # "last seen 5s ago" ages locally, next runs move on
        self.set_interval(60, self.render_schedules)

    # ------------------------------------------------------------ tabs and bindings

    @property
    def tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    def action_cycle_tab(self, step: int) -> None:
        self.action_tab(TABS[(TABS.index(self.tab) + step) % len(TABS)])

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        # focus now, not when TabActivated arrives: "3j" typed in one burst (or sent by
        # tmux) moved the cursor of the tab being left, the j came before the focus
        self.focus_tab()

    @on(TabbedContent.TabActivated)
    def tab_changed(self) -> None:
        self.refresh_bindings()
        self.focus_tab()  # a tab clicked with the mouse

    def focus_tab(self) -> None:
        tables = self.query(f"#{self.tab}-table")
        if tables:
            self.set_focus(tables.first())
        else:  # a text tab: the tab bar, so arrows keep switching tabs (never focus on nothing)
            self.set_focus(self.query_one("#tabs", TabbedContent).query(Tabs).first())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ACTION_TABS and self.is_mounted and self.tab not in ACTION_TABS[action]:
            return False
        if action in ("diff_from", "diff_to") and (self.diff_from is None) != (action == "diff_from"):
            return False
        return super().check_action(action, parameters)

    # ------------------------------------------------------------ loading

    @work(exclusive=True, group="host-load")
    async def load(self) -> None:
        try:
            host = await self.client.host(self.host.id)
            groups = await self.client.source_groups(self.host.id)
            listing = await self.client.schedules(self.host.id)
            jobs = await self.client.jobs(host_id=self.host.id, limit=JOB_LIMIT)
        except ApiError as exc:
            self.report(exc, "Cannot load host")
            return
        self.host = host
        self.groups = {g.id: g for g in groups}
        self.schedules = {s.id: s for s in listing.schedules}
        self.jobs = {j.id: j for j in jobs}
        self.loaded = True
        self.render_overview()
        self.render_groups()
        self.render_schedules()
        self.render_jobs()

    @work(exclusive=True, group="host-settings")
    async def load_settings(self) -> None:
        """Snapshots, maintenance, bandwidth and repository: read on open and after changes."""
        try:
            self.snapshots = await self.client.snapshots(self.host.id)
            self.maintenance = await self.client.maintenance(self.host.id)
            self.bandwidth = await self.client.bandwidth(self.host.id)
            self.repo = await self.client.repo(self.host.id)
        except ApiError as exc:
            self.report(exc, "Cannot load host settings")
            return
        self.settings_loaded = True
        self.render_snapshots()
        self.render_maintenance()
        self.render_settings()
        self.render_overview()

    # ------------------------------------------------------------ rendering

    def render_overview(self) -> None:
        if not self.query("#overview-text"):
            return  # an event or timer that arrives while the screen is being removed
        h = self.host
        status = f"[{STATUS_STYLE.get(h.status) or 'bold'}]{h.status.value}[/]"
        seen = f"last seen {age(h.last_seen)} ago" if h.last_seen else "never seen"
        lines = [
            f"[b]{h.hostname}[/]  {status}  {seen}  ·  {h.os} {h.arch}  ·  agent {h.agent_version or '?'}"
            f"  ·  restic {h.restic_version or '?'}",
        ]
        drift = (f"[yellow]schedule v{h.schedule_version} not yet applied (agent has "
                 f"v{h.applied_schedule_version})[/]" if h.schedule_version != h.applied_schedule_version
                 else f"schedule v{h.schedule_version} applied")
        lb = h.last_backup
        last = (f"last backup [{STATE_STYLE.get(lb.state) or 'bold'}]{lb.state.value}[/] {age(lb.finished_at)} ago"
                if lb else "no backup yet")
        stale = "  ·  [bold reverse red] STALE [/]" if h.stale else ""
        lines.append(f"{last}  ·  repo {size(h.repo_size)}  ·  {drift}{stale}")
        if (lv := h.last_verified) is not None:  # the newest restore drill, as the fleet's Verified column
            lines.append(f"last restore drill [{STATE_STYLE.get(lv.state) or 'bold'}]{lv.state.value}[/] "
                         f"{age(lv.finished_at)} ago: {plural(lv.files or 0, 'file')}, {size(lv.bytes)}, "
                         f"{plural(lv.mismatches or 0, 'mismatch', 'mismatches')}")
        if self.readonly:
            lines.append("[dim]read-only console: actions are disabled[/]")
        self.query_one("#overview-text", Static).update("\n".join(lines))
        more = Text()
        if self.settings_loaded:
            more.append("repository: ")
            more.append(self.repo.url if self.repo else "none configured", style="" if self.repo else "yellow")
            more.append(f"  ·  {plural(len(self.snapshots), 'snapshot')}\n")
        upcoming = sorted((s for s in self.schedules.values() if next_run(s) and s.enabled),
                          key=lambda s: next_run(s) or datetime.max.replace(tzinfo=timezone.utc))
        if upcoming:
            more.append("next runs: " + ", ".join(f"{s.name} {when(next_run(s))}" for s in upcoming[:4]) + "\n")
        recent = sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)[:5]
        if recent:
            more.append("\nrecent jobs\n", style="bold")
            for j in recent:
                more.append(f"  {when(j.created_at)}  {j.kind.value:<8} ")
                more.append(j.state.value, style=STATE_STYLE.get(j.state, ""))
                more.append(f"  {(j.error or '')[:80]}\n")
        more.append("\n1-7 or tab/arrows switch tabs", style="dim")
        self.query_one("#overview-more", Static).update(more)

    def group_cells(self, gid: str) -> list[Text | str]:
        g = self.groups[gid]
        keep = " ".join(f"{k.removeprefix('keep_')[0]}{v}" if k != "keep_within" else f"within {v}"
                        for k, v in g.retention.model_dump().items() if v)
        return [g.name, ", ".join(g.includes), ", ".join(g.excludes), g.tag or "", keep or "—"]

    def render_groups(self) -> None:
        """By name; the cursor stays on its group when others are added or removed around it."""
        table = self.query_one("#groups-table", ResourceTable)
        table.empty = "no source groups yet"
        table.set_rows([g.id for g in sorted(self.groups.values(), key=lambda g: g.name.lower())])
        table.invalidate(None)

    def schedule_cells(self, sid: str) -> list[Text | str]:
        s = self.schedules[sid]
        cron = Text("manual" if s.manual else (s.cron or ""))
        if not s.enabled:
            cron.append(" (disabled)", style="dim")
        names = ", ".join(self.groups[g].name if g in self.groups else "?" for g in s.source_group_ids)
        return [s.name, cron, s.timezone, names, when(next_run(s))]

    def render_schedules(self) -> None:
        """By name; also the minute timer's repaint, as "next run" moves on with the clock."""
        if not self.query("#schedules-table"):
            return  # the minute timer fired while the screen is being removed
        table = self.query_one("#schedules-table", ResourceTable)
        table.empty = "no schedules yet"
        table.set_rows([s.id for s in sorted(self.schedules.values(), key=lambda s: s.name.lower())])
        table.invalidate(None)

    def job_cells(self, job: Job) -> list[Text | str]:
        group = self.groups.get(job.source_group_id or "")
        info = self.progress.get(job.id, "") if not job.state.terminal else (job.error or "")
        if job.state.terminal and job.exit_code is not None and not info:
            info = f"exit {job.exit_code}"
        return [short_id(job.id), job.kind.value, Text(job.state.value, style=STATE_STYLE.get(job.state, "")),
                group.name if group else "—", job.actor_kind.value, when(job.created_at), when(job.finished_at),
                info]

    def render_jobs(self) -> None:
        """Newest first; the cursor stays on its job when new ones arrive above it."""
        table = self.query_one("#jobs-table", ResourceTable)
        table.set_rows(sorted(self.jobs, reverse=True)[:JOB_LIMIT])
        table.invalidate(None)

    def selected(self, tab: str) -> str | None:
        """The key of the row under the cursor of this tab's table (None: the table is empty)."""
        return self.query_one(f"#{tab}-table", ResourceTable).cursor_key

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
            if self.app.screen is self:
                self.dismiss()

    def on_schedule_updated(self, message: m.ScheduleUpdated) -> None:
        if message.host_id == self.host.id:
            self.load()  # groups or schedules changed: one host's worth of data, not a row poll

    def on_job_updated(self, message: m.JobUpdated) -> None:
        job = message.job
        if job.host_id != self.host.id:
            return
        self.jobs[job.id] = job
        table = self.query_one("#jobs-table", ResourceTable)
        if job.id in table.index:
            table.invalidate([job.id])
            table.repaint_dirty()
        else:
            self.render_jobs()
        if job.state.terminal and job.kind in (JobKind.backup, JobKind.forget, JobKind.prune):
            self.load_settings()  # snapshots and repo stats changed
        elif job.state.terminal and job.kind == JobKind.drill:
            self.load()  # the host's last_verified (no host.updated is sent for a drill)
        self.render_overview()

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
            text += f" · eta {duration(p['eta_seconds'])}"
        self.progress[message.job_id] = text
        table = self.query_one("#jobs-table", ResourceTable)
        table.invalidate([message.job_id])
        table.repaint_dirty()

    # ------------------------------------------------------------ logs

    def action_logs(self) -> None:
        from rm_tui.screens.job_log import JobLogScreen

        job_id = self.selected("jobs")
        if job_id is None:
            self.notify("No job selected", severity="warning")
            return
        self.app.push_screen(JobLogScreen(self.jobs[job_id], self.host.hostname))

    @on(ResourceTable.Selected, "#jobs-table")
    def job_selected(self) -> None:
        self.action_logs()

    # ------------------------------------------------------------ snapshots

    @on(ResourceTable.Selected, "#snapshots-table")
    def snapshot_selected(self) -> None:
        self.action_browse()

    def on_screen_resume(self) -> None:
        # back from a job log or a form: the table of the tab in front has focus again
        if self.is_mounted:
            tables = self.query(f"#{self.tab}-table")
            if tables:
                tables.first().focus()

    def action_reload(self) -> None:
        self.load()
        self.load_settings()
