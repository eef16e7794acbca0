"""The fleet: one row per host, kept current by the events stream (never by polling rows).

Events (handed down by the app, `apply`) change the in-memory model at once (`FleetModel`) and
mark rows dirty; a timer applies what piled up at most `REPAINT_HZ` times a second (re-sort only
if a host moved, repaint only visible rows). Keys go straight to the table and repaint at once."""

from __future__ import annotations

import gc
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Static

from rm_core.api import Host
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.fleet_cells import copy_cell, name_cell, status_line, verified_cell
from rm_tui.fleet_model import SORTS, FleetModel, drift
from rm_tui.format import age, plural, size
from rm_tui.next_runs import until
from rm_tui.screens.base import ApiScreen, console
from rm_tui.screens.bulk import BulkActionScreen
from rm_tui.screens.growth import GrowthScreen
from rm_tui.screens.host import HostScreen
from rm_tui.screens.jobs import FleetJobsScreen
from rm_tui.styles import STATE_STYLE, STATUS_STYLE
from rm_tui.widgets.filter_box import FilterBox
from rm_tui.widgets.table import REPAINT_HZ, Column, ResourceTable

COLUMNS = [Column("host", "Host", 28), Column("status", "Status", 8), Column("backup", "Last backup", 12),
           Column("result", "Result", 10), Column("next", "Next run", 9), Column("drift", "Schedule", 9),
           Column("repo", "Repo size", 10), Column("verified", "Verified", 12), Column("copy", "Copy", 6),
           Column("activity", "Activity", 0)]
# what the fleet model follows; the app hands these to `FleetScreen.apply` directly
FLEET_CHANGES = (m.HostUpdated, m.HostDeleted, m.JobUpdated, m.JobProgress, m.ScheduleUpdated)
# k9s-style: shift+letter sorts by that column, the same letter again reverses
SORT_KEYS = {"N": "host", "S": "status", "B": "backup", "R": "result", "V": "drift", "Z": "repo", "A": "activity",
             "T": "next", "D": "verified", "C": "copy"}


class FleetScreen(ApiScreen):
    CSS_PATH = "fleet.tcss"
    MUTATING = frozenset({"new_token", "bulk"})
    BINDINGS = [
        Binding("enter", "open_host", "Open", key_display="enter"),
        # priority: runs when the key arrives, so the keys typed right after it ("/web", at
        # terminal speed) already go to the filter box, not to the table
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("escape", "clear_filter", "Clear"),  # shown while there is a filter or marks
        Binding("p", "problems", "Problems first", show=False),
        Binding("N", "sort('host')", "Sort by host", show=False),
        *(Binding(k, f"sort('{col}')", f"Sort by {SORTS[col][0]}", show=False) for k, col in SORT_KEYS.items()
          if k != "N"),
        # the footer keeps what a first day needs and fits 80 columns; `?` lists every key
        Binding("space", "mark", "Mark"),
        Binding("x", "bulk", "Run…"),
        Binding("J", "jobs", "Jobs", key_display="J"),
        Binding("W", "growth", "Repository growth", show=False),  # G is the table's last row
        Binding("n", "new_token", "New enrollment token", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.model = FleetModel()
        self.loads = 0  # how many full reloads ran (tests prove events update rows without one)
        self._changed: set[str] = set()
        self._order_stale = False
        self._reload_timer: Timer | None = None
        self._loaded_epoch = -1  # the events connection the last load started under
        self._replay: list[Any] | None = None  # events that arrived while a load was in flight
        self._status_text = ""
        self._clearable = False  # what the footer last said of esc
        self.filtering = False  # keys typed go to the filter box (after "/", until enter or esc)

    @property
    def hosts(self) -> dict[str, Host]:
        return self.model.hosts

    def compose(self) -> ComposeResult:
        yield Header()
        # one line, the box always there beside the status line: opening or closing a box
        # moved the table, a layout that drew every row twice (bench/tty_bytes.py)
        with Horizontal(id="fleet-bar"):
            yield Static("", id="fleet-status")
            yield FilterBox(self.filter_changed, id="filter", placeholder="/ filter: hostname, online, offline, "
                                                                          "pending, anomaly, stale, failed, drill, copy, "
                                                                          "drift, problems")
        yield ResourceTable(COLUMNS, self.cells, markable=True, id="hosts", empty="loading hosts…")
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        if getattr(self.app, "events_connected", False):
            self.load()
        # else the first load starts when the events stream is up (on_events_connected): one
        # list of 20,000 hosts, not two, and nothing changes unseen between list and stream
        self.set_interval(1 / REPAINT_HZ, self.flush)
        self.set_interval(30, self.tick)

    @property
    def table(self) -> ResourceTable:
        return self.query_one("#hosts", ResourceTable)

    def load(self, fresh: bool = False) -> None:
        self._loaded_epoch = getattr(self.app, "events_epoch", 0)
        self._replay = []
        self._load(fresh)

    @work(exclusive=True, group="fleet-load")
    async def _load(self, fresh: bool) -> None:
        try:
            # the app asked for the list the moment the events stream came up (see host_list)
            app: Any = self.app
            hosts = await (self.client.hosts() if fresh else app.host_list(self._loaded_epoch))
        except ApiError as exc:
            self._replay = None
            self.report(exc, "Cannot load hosts")
            return
        self.loads += 1
        self.model.load(hosts)
        del hosts
        # The list reflects the server at some moment during the request; events received
        # meanwhile may be newer, so they are applied again on top of it, in order.
        replay, self._replay = self._replay or [], None
        for message in replay:
            self._apply(message)
        # 20,000 hosts are hundreds of thousands of long-lived objects: left to the collector,
        # every full collection walks them all again (150 ms pauses at 5,000 hosts on the
        # shared box, several during the load itself). Frozen, they are skipped; they are still
        # freed by reference counting when replaced.
        gc.freeze()
        self.show_rows()
        self.load_crons()

    # ------------------------------------------------------------ rendering

    def cells(self, host_id: str) -> list[Text | str]:
        host = self.model.hosts.get(host_id)
        if host is None:
            return []  # deleted since the last tick: drawn blank until the next one drops its row
        name = name_cell(host)
        lb = host.last_backup
        if lb is None:
            backup, result = Text("never", style="dim"), Text("—", style="dim")
        else:
            backup = Text(age(lb.finished_at) + (" ago" if lb.finished_at else ""))
            result = Text(lb.state.value, style=STATE_STYLE.get(lb.state, ""))
        if drift(host):
            schedule = Text(f"v{host.applied_schedule_version}→v{host.schedule_version}", style="yellow")
        else:
            schedule = Text(f"v{host.schedule_version}", style="dim")
        now = self.model.next_runs.clock()
        fire = self.model.next_runs.next(host_id, now)
        return [name, Text(host.status.value, style=STATUS_STYLE.get(host.status, "")), backup, result,
                Text(until(fire, now), style="" if fire else "dim"), schedule,
                size(host.repo_size), verified_cell(host), copy_cell(host),
                ", ".join(self.model.activity.get(host_id, {}).values())]

    def show_rows(self) -> None:
        """The model's current order into the table (cursor stays on its host), and the counts."""
        self._order_stale = False
        self.table.empty = self.empty_text()
        self.table.set_rows(self.model.visible())
        self.table.invalidate(None)
        self.update_status()

    def flush(self) -> None:
        """What the events changed since the last tick, at most REPAINT_HZ times a second."""
        if not self._changed and not self._order_stale:
            return
        if not self.is_active:
            # Covered by another screen: keep collecting, paint on resume. A screen below the
            # top one that repaints makes Textual repaint the whole top screen, per event.
            return
        changed, self._changed = self._changed, set()
        if self._order_stale or self.model.order_changed:
            self._order_stale = False
            self.table.set_rows(self.model.visible())
        self.table.invalidate(changed)
        self.table.repaint_dirty()
        self.update_status()

    def update_status(self) -> None:
        if self.clearable() != self._clearable:
            self._clearable = not self._clearable
            self.refresh_bindings()  # esc comes into the footer, or leaves it
        text = status_line(self.model, len(self.table.marks), getattr(self.app, "events_connected", False))
        if text != self._status_text:  # most ticks change rows, not counts
            self._status_text = text
            self.query_one("#fleet-status", Static).update(text, layout=False)  # one line, fixed height

    def on_screen_resume(self) -> None:
        if self.model.hosts:
            self.show_rows()  # what changed while another screen was on top

    def selected_host_id(self) -> str | None:
        return self.table.cursor_key

    # ------------------------------------------------------------ events: model now, screen on the next tick

    def on_events_connected(self, _: m.EventsConnected) -> None:
        # whatever happened while disconnected is only in a fresh list; one list per
        # connection (on_mount may already have started it for this one)
        if self._loaded_epoch != getattr(self.app, "events_epoch", 0):
            self.load()

    def on_events_lost(self, _: m.EventsLost) -> None:
        if not self.loads and self._replay is None:
            self.load()  # no live updates, but the list all the same
        self.update_status()

    def apply(self, message: m.ServerEvent) -> None:
        """One server event into the model (cheap: no widget work); the screen follows on the next tick."""
        if self._replay is not None:
            self._replay.append(message)
        self._apply(message)

    def _apply(self, message: m.ServerEvent) -> None:
        if isinstance(message, m.HostUpdated):
            known = message.host.id in self.model.hosts
            self.model.put(message.host)
            self._changed.add(message.host.id)
            self._order_stale |= not known
        elif isinstance(message, m.HostDeleted):
            self.model.remove(message.host_id)
            self._order_stale = True
        elif isinstance(message, m.JobUpdated):
            if self.model.job(message.job):
                self._changed.add(message.job.host_id)
        elif isinstance(message, m.JobProgress):
            if self.model.progress(message.host_id, message.job_id, message.progress):
                self._changed.add(message.host_id or "")
        elif isinstance(message, m.ScheduleUpdated):
            self._schedule_updated(message)

    def _schedule_updated(self, message: m.ScheduleUpdated) -> None:
        """A schedule changed or was applied: the drift and next-run columns follow (after a
        delete, and after a fleet-wide policy push, whose events carry each host's versions)."""
        host = self.model.hosts.get(message.host_id)
        if host is None:
            return
        if message.crons is not None:
            self.model.next_runs.put(host.id, message.crons)
        if message.version is None or message.applied_version is None:
            # an older server's fleet-wide push names hosts but not versions: one reload for the burst
            if not self._reload_timer:
                self._reload_timer = self.set_timer(2.0, self._reload_after_push)
            return
        self.model.put(host.model_copy(update={"schedule_version": message.version,
                                               "applied_schedule_version": message.applied_version}))
        self._changed.add(host.id)

    def _reload_after_push(self) -> None:
        self._reload_timer = None
        self.load(fresh=True)

    # ------------------------------------------------------------ actions

    def action_open_host(self) -> None:
        if (host_id := self.selected_host_id()) and host_id in self.model.hosts:
            self.app.push_screen(HostScreen(self.model.hosts[host_id]))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("filter", "open_host") and self.filtering:
            return False  # "/" is text now; enter ends the typing (on_key)
        if action == "clear_filter" and not self.clearable():
            return False  # nothing to clear: esc stays out of the footer
        return super().check_action(action, parameters)

    def clearable(self) -> bool:
        """A filter (typed, or its box in use) or marks: what esc clears (nothing, while being removed)."""
        boxes, tables = self.query("#filter"), self.query(ResourceTable)
        return bool(boxes and tables and (self.model.filter_text or self.filtering or tables.first().marks))

    def action_filter(self) -> None:
        """Typing goes to the box from the next key on (a priority binding: keys typed right
        after "/" are already the filter's); the table keeps focus and the arrows move it."""
        self.set_filtering(True)

    def set_filtering(self, on: bool) -> None:
        self.filtering = on
        self.query_one("#filter", FilterBox).set_class(on, "-typing")
        self.table.consumes_text = on  # the footer leaves out the keys that are text now
        if self.focused is not self.table:
            self.table.focus()  # (focus() draws the whole widget again, even when it had focus)
        self.refresh_bindings()
        self.update_status()

    def on_key(self, event: events.Key) -> None:
        if not self.filtering:
            return
        if event.key == "enter":
            self.set_filtering(False)  # the filter stays; enter again opens the host
        elif not self.query_one("#filter", FilterBox).take(event):
            return
        event.stop()
        event.prevent_default()

    def on_paste(self, event: events.Paste) -> None:
        if self.filtering:
            self.query_one("#filter", FilterBox).paste(event.text)
            event.stop()

    def empty_text(self) -> str:
        if self.model.hosts and self.model.filter_text:
            return f"no host matches {self.model.filter_text!r} (esc clears the filter)"
        return "no hosts enrolled yet: press n for an enrollment token and run its install command on the host"

    def filter_changed(self, value: str) -> None:
        """As typed (FilterBox: in the turn of the echo). Only rows whose line shows another host
        are drawn; the first match is on top, not under an old offset."""
        if not self.is_mounted or value == self.model.filter_text:
            return
        self.model.set_filter(value)
        self._order_stale = False
        self.table.empty = self.empty_text()
        # typed: from the first match; cleared: the cursor's host stays where it is on screen
        self.table.set_rows(self.model.visible(), from_top=bool(value))  # strips kept: only the order changed
        self.update_status()

    def action_clear_filter(self) -> None:
        if not self.model.filter_text and not self.filtering and self.table.marks:
            self.table.clear_marks()
            self.update_status()
            return
        self.query_one("#filter", FilterBox).value = ""  # the rows follow (filter_changed)
        self.set_filtering(False)

    def action_sort(self, column: str) -> None:
        self.model.set_sort(column)
        self.show_rows()

    def action_problems(self) -> None:
        self.model.toggle_problems()
        self.show_rows()
        self.table.action_jump(0)

    def action_mark(self) -> None:
        self.table.toggle_mark()
        self.table.action_cursor(1)
        self.update_status()

    def action_bulk(self) -> None:
        selected = self.selected_host_id()
        ids = [k for k in self.table.keys if k in self.table.marks] or ([selected] if selected else [])
        if ids:
            self.app.push_screen(BulkActionScreen([self.model.hosts[i] for i in ids]))

    def action_jobs(self) -> None:
        self.app.push_screen(FleetJobsScreen({h.id: h.hostname for h in self.model.hosts.values()}))

    def action_growth(self) -> None:
        self.app.push_screen(GrowthScreen())

    def action_reload(self) -> None:
        self.load(fresh=True)

    def action_new_token(self) -> None:
        from rm_tui.screens.enrollment import EnrollmentScreen  # opens from the app and from here

        if console(self).can_write:
            self.app.push_screen(EnrollmentScreen(open_form=True))

    # ------------------------------------------------------------ next runs (crons, by the clock)

    @work(exclusive=True, group="fleet-crons")
    async def load_crons(self) -> None:
        """Every host's crons for the next-run column: after the list, so it never delays the fleet."""
        self.model.next_runs.begin_load()
        try:
            crons = await self.client.fleet_crons()
        except ApiError as exc:
            if exc.status != 404:  # a server without /fleet/crons: the column stays "—"
                self.report(exc, "Cannot load the schedules' crons")
            return
        self.model.next_runs.load(crons)
        self.next_runs_moved()

    def next_runs_moved(self) -> None:
        if self.model.sort == "next":
            self.model.reorder()
            self._order_stale = True
        self.table.invalidate(None)

    def tick(self) -> None:
        """Ages ("5m ago") and next runs ("in 3h") move with the clock: the visible rows are
        re-rendered locally, no network; sorted by next run, a run that passed reorders."""
        if self.model.sort == "next" and self.model.next_runs.passed():
            self.next_runs_moved()
        else:
            self.table.invalidate(None)
