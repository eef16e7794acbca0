"""The schedules tab: when the host backs up which groups, run now (`r`), new, edit, delete."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding

from rm_core.api import Host, Schedule, SourceGroup
from rm_core.cron import CronError, next_fires
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import plural, zoned
from rm_tui.host_tabs.base import HostTab
from rm_tui.host_tabs.groups import changes_groups, conflict_text
from rm_tui.screens.forms import ScheduleForm
from rm_tui.widgets.table import Column, ResourceTable

# The zone column grows to the longest zone shown (America/Argentina/Buenos_Aires: 30);
# the next run is in the schedule's own zone, named: "02:00 EST", "2026-01-02 02:00 AEDT".
SCHEDULE_COLUMNS = [Column("name", "Name", 16), Column("cron", "When", 22), Column("tz", "Timezone", 8),
                    Column("groups", "Groups", 0), Column("next", "Next run", 21)]
TZ_WIDTH = (8, 32)


def next_run(s: Schedule, now: datetime | None = None) -> datetime | None:
    """The next fire computed now, by the clock: the server's next_run goes stale as time passes."""
    if s.manual or not s.enabled or not s.cron:
        return None
    try:
        return next_fires(s.cron, s.timezone, now or datetime.now(timezone.utc), 1)[0]
    except CronError:
        return s.next_run


class SchedulesTab(HostTab):
    MUTATING = frozenset({"run_now", "new", "edit", "delete"})
    BINDINGS = [
        Binding("r", "run_now", "Run now"),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("ctrl+d", "delete", "Delete"),
    ]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        self.schedules: dict[str, Schedule] = {}
        self.groups: dict[str, SourceGroup] = {}  # the groups tab's, handed down by the screen (names)

    def compose(self) -> ComposeResult:
        yield ResourceTable(SCHEDULE_COLUMNS, self.cells, id="schedules-table", empty="loading…")

    def on_mount(self) -> None:
        self.load()
        self.set_interval(60, self.render_rows)  # "next run" moves on with the clock

    @work(exclusive=True, group="schedules-load")
    async def load(self) -> None:
        try:
            listing = await self.client.schedules(self.host.id)
        except ApiError as exc:
            self.report(exc, "Cannot load schedules")
            return
        if not self.is_mounted:
            return  # the screen closed while this loaded
        self.schedules = {s.id: s for s in listing.schedules}
        self.loaded = True
        self.changed()

    def apply(self, event: m.ServerEvent) -> None:
        super().apply(event)
        if isinstance(event, m.ScheduleUpdated) and changes_groups(event):
            self.load()

    def set_groups(self, groups: dict[str, SourceGroup]) -> None:
        self.groups = groups
        self.render_rows()

    def cells(self, sid: str) -> list[Text | str]:
        s = self.schedules[sid]
        cron = Text("manual" if s.manual else (s.cron or ""))
        if not s.enabled:
            cron.append(" (disabled)", style="dim")
        names = ", ".join(self.groups[g].name if g in self.groups else "?" for g in s.source_group_ids)
        return [s.name, cron, s.timezone, names, zoned(next_run(s), s.timezone)]

    def render_rows(self) -> None:
        """By name; also the minute timer's repaint, as "next run" moves on with the clock."""
        table = self.table
        if table is None:
            return  # not mounted yet, or being taken down
        if self.loaded:
            table.empty = "no schedules yet: press n to add one"
        longest = max((len(s.timezone) for s in self.schedules.values()), default=0)
        table.set_width("tz", max(TZ_WIDTH[0], min(longest, TZ_WIDTH[1])))
        table.set_rows([s.id for s in sorted(self.schedules.values(), key=lambda s: s.name.lower())])
        table.invalidate(None)

    def changed(self) -> None:
        self.render_rows()
        self.post_message(m.SchedulesChanged(dict(self.schedules)))

    # ------------------------------------------------------------ run now

    def action_run_now(self) -> None:
        sid = self.selected()
        if sid:
            self.run_schedule(sid)
        else:
            self.notify("This host has no schedule to run", severity="warning")

    @work(exclusive=True, group="run-now")
    async def run_schedule(self, schedule_id: str) -> None:
        name = self.schedules[schedule_id].name if schedule_id in self.schedules else schedule_id
        try:
            jobs = await self.client.run_schedule(self.host.id, schedule_id)
        except ApiError as exc:
            self.report(exc, f"Cannot run {name}")
            return
        self.notify(f"schedule {name}: {plural(len(jobs), 'job')} started")
        if jobs:
            self.post_message(m.JobsStarted(jobs))

    # ------------------------------------------------------------ new / edit / delete

    def group_choices(self) -> list[tuple[str, str]]:
        return [(g.name, g.id) for g in sorted(self.groups.values(), key=lambda g: g.name.lower())]

    def action_new(self) -> None:
        if not self.groups:
            self.notify("Create a source group first: a schedule backs up source groups", severity="warning")
            return
        self.form({}, None)

    def action_edit(self) -> None:
        sid = self.selected()
        if sid is None:
            self.notify("No schedule selected", severity="warning")
            return
        self.form(self.schedules[sid].model_dump(mode="json", include={"name", "cron", "timezone", "enabled",
                                                                       "manual", "source_group_ids"}), sid)

    def form(self, values: dict[str, Any], sid: str | None, error: str | None = None) -> None:
        self.push_form(ScheduleForm(self.group_choices(), values, error, editing=sid is not None),
                       lambda body: self.save(body, sid))

    @work(group="host-save")
    async def save(self, body: dict[str, Any], sid: str | None) -> None:
        try:
            schedule = await self.client.save_schedule(self.host.id, body, sid)
        except ApiError as exc:
            if self.refused(exc, "Cannot save schedule"):
                self.form(body, sid, exc.message)
            return
        self.schedules[schedule.id] = schedule
        self.changed()
        if (table := self.table) is not None:
            table.move_to(schedule.id)
        self.notify(f"schedule {schedule.name} saved")

    def action_delete(self) -> None:
        sid = self.selected()
        if sid is None:
            self.notify("Nothing selected to delete", severity="warning")
            return
        self.ask(f"Delete schedule {self.schedules[sid].name!r}?",
                 lambda: self.delete(sid))

    @work(group="host-save")
    async def delete(self, sid: str) -> None:
        try:
            await self.client.delete_schedule(self.host.id, sid)
        except ApiError as exc:
            if exc.status == 401:
                self.report(exc, "Cannot delete")
            else:
                self.notify(conflict_text(exc), title="Cannot delete", severity="error", timeout=10)
            return
        name = self.schedules.pop(sid).name
        self.changed()
        self.notify(f"{name} deleted")
