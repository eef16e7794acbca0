"""One host as tabs: overview · source groups · schedules · jobs · snapshots · maintenance ·
settings · history. Each tab is a widget of rm_tui/host_tabs/ that owns its data and its keys; this
screen composes them, switches between them, hands the host and the server's events down
(`hand_down`) and passes on what one tab posts up that another shows (`on_*_changed`)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, TabbedContent, TabPane

from rm_core.api import Host
from rm_core.enums import JobKind
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.host_tabs.base import HostTab
from rm_tui.host_tabs.groups import GroupsTab
from rm_tui.host_tabs.history import HistoryTab
from rm_tui.host_tabs.jobs import JobsTab
from rm_tui.host_tabs.maintenance import MaintenanceTab
from rm_tui.host_tabs.overview import OverviewTab
from rm_tui.host_tabs.schedules import SchedulesTab
from rm_tui.host_tabs.settings import SettingsTab
from rm_tui.host_tabs.snapshots import SnapshotsTab
from rm_tui.screens.base import ApiScreen
from rm_tui.screens.job_log import JobLogScreen

# (id, title, widget): the order of the tab bar and of the keys 1-8
TABS: tuple[tuple[str, str, type[HostTab]], ...] = (
    ("overview", "Overview", OverviewTab), ("groups", "Source groups", GroupsTab),
    ("schedules", "Schedules", SchedulesTab), ("jobs", "Jobs", JobsTab), ("snapshots", "Snapshots", SnapshotsTab),
    ("maintenance", "Maintenance", MaintenanceTab), ("settings", "Settings", SettingsTab),
    ("history", "History", HistoryTab))
TAB_IDS = tuple(tab for tab, _, _ in TABS)
# what the first full load of the screen waits for (tests, `loaded`), and the tabs read on open
FIRST = ("overview", "groups", "schedules", "jobs")


def concerns(event: m.ServerEvent, host_id: str) -> bool:
    """Whether an event is about this host (or about the stream itself: connected, lost)."""
    if isinstance(event, m.JobUpdated):
        return event.job.host_id == host_id
    if isinstance(event, (m.JobProgress, m.ScheduleUpdated)):
        return event.host_id in (host_id, None)
    return not isinstance(event, m.AuditAppended)


class HostScreen(ApiScreen):
    CSS_PATH = "host.tcss"
    MUTATING = frozenset({"init_repo", "repo", "admin_creds"})
    BINDINGS = [
        Binding("escape", "back", "Back"),
        # tab always means "next tab" here: focus stays on the table of the tab in front
        # (before, tab moved focus between the tab bar and the table, one or the other)
        Binding("tab,right", "cycle_tab(1)", "Next tab", show=False),
        Binding("shift+tab,left", "cycle_tab(-1)", "Previous tab", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
        # named by the server's errors ("press i on the host in the console", rm_core.restic
        # ADVICE_*): they work from every tab, the settings tab (which owns the repository) acts
        Binding("i", "init_repo", "Init repository", show=False),
        Binding("p", "repo", "Repository", show=False),
        Binding("a", "admin_creds", "Admin credentials", show=False),
        *(Binding(str(i + 1), f"tab('{tab}')", f"{title} tab", show=False) for i, (tab, title, _) in enumerate(TABS)),
    ]

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for tab, title, widget in TABS:
                with TabPane(title, id=tab):
                    yield widget(self.host, id=f"{tab}-tab")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.host.hostname
        self.focus_tab()

    # ------------------------------------------------------------ tabs

    def pane(self, tab: str) -> HostTab:
        """The widget of one tab ("groups", "jobs", …)."""
        return self.query_one(f"#{tab}-tab", HostTab)

    @property
    def tabs(self) -> list[HostTab]:
        return list(self.query(HostTab))

    @property
    def tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    @property
    def loaded(self) -> bool:
        """The first load of the overview, groups, schedules and jobs finished."""
        return all(self.pane(tab).loaded for tab in FIRST)

    @property
    def settings_loaded(self) -> bool:
        """Snapshots, maintenance and settings have loaded."""
        return all(self.pane(tab).loaded for tab in ("snapshots", "maintenance", "settings"))

    def action_cycle_tab(self, step: int) -> None:
        self.action_tab(TAB_IDS[(TAB_IDS.index(self.tab) + step) % len(TAB_IDS)])

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        # focus now, not when TabActivated arrives: "3j" typed in one burst (or sent by
        # tmux) moved the cursor of the tab being left, the j came before the focus
        self.focus_tab()

    @on(TabbedContent.TabActivated)
    def tab_changed(self) -> None:
        self.focus_tab()  # a tab clicked with the mouse

    def focus_tab(self) -> None:
        """Focus in the tab in front (its table, or the tab itself): its keys lead the footer."""
        self.set_focus(self.pane(self.tab).focus_target())
        self.refresh_bindings()

    def on_screen_resume(self) -> None:
        # back from a job log or a form: the table of the tab in front has focus again
        if self.is_mounted:
            self.focus_tab()

    # ------------------------------------------------------------ events down

    @on(m.ServerEvent)
    def hand_down(self, event: m.ServerEvent) -> None:
        """The server's events (posted here by RmTui.broadcast), to every tab they concern."""
        if isinstance(event, m.HostDeleted):
            if event.host_id == self.host.id:
                self.notify(f"{self.host.hostname} was removed from the fleet", severity="warning")
                self.close()
            return
        if isinstance(event, m.HostUpdated):
            if event.host.id == self.host.id:
                self.set_host(event.host)
            return
        if not concerns(event, self.host.id):
            return
        if isinstance(event, m.EventsConnected):
            self.load_host()
        elif isinstance(event, m.ScheduleUpdated) and event.version is not None and event.applied_version is not None:
            # an edit or the agent's ack: the overview's "schedule v3 applied" follows
            self.set_host(self.host.model_copy(update={"schedule_version": event.version,
                                                        "applied_schedule_version": event.applied_version}))
        elif isinstance(event, m.JobUpdated) and event.job.state.terminal and event.job.kind == JobKind.drill:
            self.load_host()  # the host's last_verified (no host.updated is sent for a drill)
        for tab in self.tabs:
            tab.apply(event)

    def set_host(self, host: Host) -> None:
        self.host = host
        for tab in self.tabs:
            tab.host = host

    def load_host(self) -> None:
        self.run_worker(self._load_host(), exclusive=True, group="host-load")

    async def _load_host(self) -> None:
        try:
            host = await self.client.host(self.host.id)
        except ApiError as exc:
            self.report(exc, "Cannot load host")
            return
        self.set_host(host)

    def action_init_repo(self) -> None:
        self.query_one(SettingsTab).action_init_repo()

    def action_repo(self) -> None:
        self.query_one(SettingsTab).action_repo()

    def action_admin_creds(self) -> None:
        self.query_one(SettingsTab).action_admin_creds()

    def action_reload(self) -> None:
        self.load_host()
        for tab in self.tabs:
            tab.load()

    # ------------------------------------------------------------ messages up, handed across

    def on_groups_changed(self, message: m.GroupsChanged) -> None:
        self.query_one(SchedulesTab).set_groups(message.groups)
        self.query_one(JobsTab).set_groups(message.groups)

    def on_schedules_changed(self, message: m.SchedulesChanged) -> None:
        overview = self.query_one(OverviewTab)
        overview.schedules = message.schedules
        overview.render_overview()

    def on_jobs_changed(self, message: m.JobsChanged) -> None:
        overview = self.query_one(OverviewTab)
        overview.recent = message.recent
        overview.render_overview()

    def on_snapshots_changed(self, message: m.SnapshotsChanged) -> None:
        self.query_one(SettingsTab).set_newest(message.newest)
        overview = self.query_one(OverviewTab)
        overview.snapshot_count = message.count
        overview.render_overview()

    def on_repo_changed(self, message: m.RepoChanged) -> None:
        overview = self.query_one(OverviewTab)
        overview.repo, overview.repo_known = message.repo, True
        overview.render_overview()

    def on_jobs_started(self, message: m.JobsStarted) -> None:
        """Run now: the new job is listed (the jobs tab's cursor on it) and its live log opens,
        so `l` can never open an older job by mistake; esc comes back here."""
        self.query_one(JobsTab).add(message.jobs)
        if self.app.screen is self:
            self.app.push_screen(JobLogScreen(message.jobs[0], self.host.hostname))

    def on_host_removed(self, _: m.HostRemoved) -> None:
        self.close()

    # ------------------------------------------------------------ leaving

    def close(self) -> None:
        if self.app.screen is self:
            self.dismiss()

    def action_back(self) -> None:
        self.app.pop_screen()
