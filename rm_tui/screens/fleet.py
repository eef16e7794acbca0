"""The fleet: one row per host, kept current by the events stream (never by polling rows)."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from rm_core.api import Host, Job, LastBackup
from rm_core.enums import HostStatus, JobKind, JobState
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import age, size

COLUMNS = [("host", "Host"), ("status", "Status"), ("backup", "Last backup"), ("result", "Result"),
           ("drift", "Schedule"), ("repo", "Repo size"), ("activity", "Activity")]

STATUS_STYLE = {HostStatus.online: "green", HostStatus.offline: "red", HostStatus.pending: "yellow"}
STATE_STYLE = {JobState.succeeded: "green", JobState.warning: "yellow", JobState.failed: "bold red",
               JobState.lost: "red", JobState.cancelled: "dim"}


def _backup_age(h: Host) -> float:
    """Oldest (or never) backup first: the hosts that need a look."""
    done = h.last_backup.finished_at if h.last_backup else None
    return done.timestamp() if done else float("-inf")


SORTS = [
    ("hostname", lambda h: h.hostname.lower()),
    ("problems first", lambda h: (not h.stale, h.status != HostStatus.offline,
                                  h.last_backup is not None and h.last_backup.state == JobState.succeeded,
                                  h.hostname.lower())),
    ("status", lambda h: (h.status.value, h.hostname.lower())),
    ("oldest backup", lambda h: (_backup_age(h), h.hostname.lower())),
]


class FleetScreen(Screen[None]):
    CSS_PATH = "fleet.tcss"
    BINDINGS = [
        Binding("enter", "open_host", "Open host"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("s", "sort", "Sort"),
        Binding("n", "new_token", "New enrollment token"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.hosts: dict[str, Host] = {}
        self.activity: dict[str, dict[str, str]] = {}  # host_id -> job_id -> "backup 42%"
        self.filter_text = ""
        self.sort_by = 0  # index into SORTS
        self.loads = 0  # how many full reloads ran (tests prove events update rows without one)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: hostname, status (online/offline/pending), stale, drift", id="filter")
        yield Static("", id="fleet-status")
        table: DataTable[Text | str] = DataTable(id="hosts", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#hosts", DataTable).focus()
        self.load()
        # Ages ("5m") grow with the clock; re-render them locally, no network involved.
        self.set_interval(30, self.render_rows)

    @property
    def client(self):
        return self.app.client  # type: ignore[attr-defined]

    @work(exclusive=True, group="fleet-load")
    async def load(self) -> None:
        try:
            hosts = await self.client.hosts()
        except ApiError as exc:
            self.app.report(exc, "Cannot load hosts")  # type: ignore[attr-defined]
            return
        self.loads += 1
        self.hosts = {h.id: h for h in hosts}
        self.render_rows()

    # ------------------------------------------------------------ rendering

    def visible(self, host: Host) -> bool:
        f = self.filter_text.lower()
        if not f:
            return True
        drift = host.schedule_version != host.applied_schedule_version
        return (f in host.hostname.lower() or f == host.status.value or (f == "stale" and host.stale)
                or (f == "drift" and drift))

    def cells(self, host: Host) -> dict[str, Text | str]:
        name = Text(host.hostname, style="bold red" if host.stale else "")
        if host.stale:
            name.append(" stale", style="reverse red")
        lb = host.last_backup
        if lb is None:
            backup, result = Text("never", style="dim"), Text("—", style="dim")
        else:
            backup = Text(age(lb.finished_at) + (" ago" if lb.finished_at else ""))
            result = Text(lb.state.value, style=STATE_STYLE.get(lb.state, ""))
        if host.schedule_version != host.applied_schedule_version:
            drift = Text(f"v{host.applied_schedule_version}→v{host.schedule_version}", style="yellow")
        else:
            drift = Text(f"v{host.schedule_version}", style="dim")
        return {
            "host": name,
            "status": Text(host.status.value, style=STATUS_STYLE.get(host.status, "")),
            "backup": backup,
            "result": result,
            "drift": drift,
            "repo": size(host.repo_size),
            "activity": ", ".join(self.activity.get(host.id, {}).values()),
        }

    def render_rows(self) -> None:
        """Rebuild the table from what we hold, keeping the cursor on the same host."""
        table = self.query_one("#hosts", DataTable)
        selected = self.selected_host_id()
        table.clear()
        shown = sorted((h for h in self.hosts.values() if self.visible(h)), key=SORTS[self.sort_by][1])
        for host in shown:
            cells = self.cells(host)
            table.add_row(*(cells[key] for key, _ in COLUMNS), key=host.id)
        if selected in {h.id for h in shown}:
            table.move_cursor(row=table.get_row_index(selected))
        self.update_status()

    def update_row(self, host: Host) -> None:
        """Change one host's cells in place; add or drop the row when it enters/leaves the filter."""
        table = self.query_one("#hosts", DataTable)
        present = host.id in table.rows
        if not self.visible(host):
            if present:
                table.remove_row(host.id)
            self.update_status()
            return
        if not present or self.sort_by:
            self.render_rows()  # keeps the sort order (from memory, no request)
            return
        for key, value in self.cells(host).items():
            table.update_cell(host.id, key, value, update_width=True)
        self.update_status()

    def update_status(self) -> None:
        hosts = list(self.hosts.values())
        counts = {s: sum(1 for h in hosts if h.status == s) for s in HostStatus}
        stale = sum(1 for h in hosts if h.stale)
        if not hosts:
            self.query_one("#fleet-status", Static).update(
                "no hosts enrolled yet: create an enrollment token and run its install command on the host")
            return
        parts = [f"{len(hosts)} hosts", f"[green]{counts[HostStatus.online]} online[/]",
                 f"[red]{counts[HostStatus.offline]} offline[/]", f"[yellow]{counts[HostStatus.pending]} pending[/]"]
        if stale:
            parts.append(f"[bold red]{stale} stale[/]")
        if self.sort_by:
            parts.append(f"sorted by {SORTS[self.sort_by][0]}")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text!r}")
        if not getattr(self.app, "events_connected", False):
            parts.append("[reverse yellow] live updates paused [/]")
        self.query_one("#fleet-status", Static).update("  ·  ".join(parts))

    def selected_host_id(self) -> str | None:
        table = self.query_one("#hosts", DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # ------------------------------------------------------------ events

    def on_events_connected(self, _: m.EventsConnected) -> None:
        self.load()  # whatever happened while disconnected is only in a fresh list

    def on_events_lost(self, _: m.EventsLost) -> None:
        self.update_status()

    def on_host_updated(self, message: m.HostUpdated) -> None:
        self.hosts[message.host.id] = message.host
        self.update_row(message.host)

    def on_host_deleted(self, message: m.HostDeleted) -> None:
        self.hosts.pop(message.host_id, None)
        self.activity.pop(message.host_id, None)
        table = self.query_one("#hosts", DataTable)
        if message.host_id in table.rows:
            table.remove_row(message.host_id)
        self.update_status()

    def on_job_updated(self, message: m.JobUpdated) -> None:
        job = message.job
        host = self.hosts.get(job.host_id)
        if host is None:
            return
        jobs = self.activity.setdefault(job.host_id, {})
        if job.state.terminal:
            jobs.pop(job.id, None)
            if job.kind == JobKind.backup and _newer(job, host.last_backup):
                host.last_backup = LastBackup(job_id=job.id, state=job.state, finished_at=job.finished_at)
        else:
            jobs[job.id] = f"{job.kind.value} {job.state.value}"
        self.update_row(host)

    def on_job_progress(self, message: m.JobProgress) -> None:
        host = self.hosts.get(message.host_id or "")
        if host is None:
            return
        jobs = self.activity.setdefault(host.id, {})
        kind = jobs.get(message.job_id, "job").split(" ")[0]
        pct = message.progress.get("percent")
        jobs[message.job_id] = f"{kind} {pct:.0f}%" if isinstance(pct, (int, float)) else f"{kind} running"
        self.update_row(host)

    # ------------------------------------------------------------ actions

    @on(DataTable.RowSelected, "#hosts")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.open(event.row_key.value)

    def action_open_host(self) -> None:
        self.open(self.selected_host_id())

    def open(self, host_id: str | None) -> None:
        from rm_tui.screens.host import HostScreen

        if host_id and host_id in self.hosts:
            self.app.push_screen(HostScreen(self.hosts[host_id]))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.render_rows()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        if not self.filter_text:
            self.query_one("#filter", Input).display = False
        self.query_one("#hosts", DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self.render_rows()
        self.query_one("#hosts", DataTable).focus()

    def action_sort(self) -> None:
        self.sort_by = (self.sort_by + 1) % len(SORTS)
        self.render_rows()
        self.notify(f"sorted by {SORTS[self.sort_by][0]}", timeout=2)

    def action_reload(self) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "new_token" and not self.app.can_write:  # type: ignore[attr-defined]
            return False
        return True

    def action_new_token(self) -> None:
        from rm_tui.screens.admin import EnrollmentScreen

        if self.app.can_write:  # type: ignore[attr-defined]
            self.app.push_screen(EnrollmentScreen(open_form=True))


def _newer(job: Job, last: LastBackup | None) -> bool:
    if last is None or last.finished_at is None:
        return True
    return (job.finished_at or datetime.now(timezone.utc)) >= last.finished_at
