"""The overview tab: the host's status line, and a summary of what the other tabs own
(repository, snapshot count, next runs, latest jobs), handed down by the screen."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from rm_core.api import Host, RepoInfo, Schedule
from rm_core.jobs import Job
from rm_tui.fleet_model import copy_late
from rm_tui.format import age, plural, size, when, zoned
from rm_tui.host_tabs.base import HostTab
from rm_tui.host_tabs.schedules import next_run
from rm_tui.styles import STATE_STYLE, STATUS_STYLE, job_state

RECENT_JOBS = 5


class OverviewTab(HostTab, can_focus=True):
    # the screen's keys (they work on every tab), shown here where a failed backup is read first
    BINDINGS = [
        Binding("i", "screen.init_repo", "Init repo"),
        Binding("p", "screen.repo", "Repository"),
    ]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        # what the other tabs posted up (the screen sets these; each tab owns the original)
        self.schedules: dict[str, Schedule] = {}
        self.recent: list[Job] = []
        self.repo: RepoInfo | None = None
        self.snapshot_count: int | None = None
        self.repo_known = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(can_focus=False):
            yield Static(id="overview-text")
            yield Static(id="overview-more")

    def on_mount(self) -> None:
        self.load()
        self.render_overview()
        self.set_interval(15, self.render_overview)  # "last seen 5s ago" ages locally, next runs move on

    def watch_host(self) -> None:
        self.render_overview()

    def render_overview(self) -> None:
        if not self.is_mounted:
            return  # a timer or an event that arrives while the screen is being removed
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
        if h.open_anomalies:
            lines.append(f"[bold red]anomaly[/]: {escape(h.anomaly or '')}  [dim](history tab: 8, a acknowledges)[/]")
        if h.copy_enabled:
            lines.append("copy up to date" if h.copy_behind_since is None else
                         f"copy [{'bold red' if copy_late(h) else 'yellow'}]missing snapshots for "
                         f"{age(h.copy_behind_since)}[/]")
        if self.readonly:
            lines.append("[dim]read-only console: actions are disabled[/]")
        text, more = self.part("#overview-text", Static), self.part("#overview-more", Static)
        if text is not None and more is not None:  # else the tab is being taken down
            text.update("\n".join(lines))
            more.update(self.summary())

    def summary(self) -> Text:
        more = Text()
        if self.repo_known and self.snapshot_count is not None:
            more.append("repository: ")
            more.append(self.repo.url if self.repo else "none configured", style="" if self.repo else "yellow")
            more.append(f"  ·  {plural(self.snapshot_count, 'snapshot')}\n")
        upcoming = sorted((s for s in self.schedules.values() if next_run(s) and s.enabled),
                          key=lambda s: next_run(s) or datetime.max.replace(tzinfo=timezone.utc))
        if upcoming:
            more.append("next runs: " + ", ".join(f"{s.name} {zoned(next_run(s), s.timezone)}" for s in upcoming[:4])
                        + "\n")
        if self.recent:
            more.append("\nrecent jobs\n", style="bold")
            for j in self.recent[:RECENT_JOBS]:
                more.append(f"  {when(j.created_at)}  {j.kind.value:<8} ")
                more.append(job_state(j))
                more.append(f"  {(j.error or '')[:80]}\n")
        more.append("\n1-8 or tab/arrows switch tabs", style="dim")
        return more
