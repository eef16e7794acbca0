"""The source groups tab: what is backed up, run now (`r`), new, edit, delete."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding

from rm_core.api import Host, SourceGroup
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import short_id
from rm_tui.host_tabs.base import HostTab
from rm_tui.screens.forms import SourceGroupForm
from rm_tui.widgets.table import Column, ResourceTable

# copy_ (the group's `copy` policy) and anomaly: kept as they are when the form saves the group
GROUP_BODY_KEYS = ("name", "includes", "excludes", "tag", "retention", "pre_hook", "post_hook", "copy_",
                   "anomaly")
# Narrow enough that the column taking the rest (paths) keeps room at 80-90 columns.
GROUP_COLUMNS = [Column("name", "Name", 16), Column("paths", "Paths", 0), Column("excludes", "Excludes", 16),
                 Column("tag", "Tag", 10), Column("keep", "Keep", 14)]


def conflict_text(exc: ApiError) -> str:
    """The server's message, plus the names of the schedules a 409 says are in the way."""
    users = exc.details.get("schedules") if isinstance(exc.details, dict) else None
    if exc.status == 409 and isinstance(users, list) and users:
        names = ", ".join(str(u.get("name", u.get("id"))) for u in users if isinstance(u, dict))
        return f"{exc.message} (used by: {names})"
    return exc.message


def changes_groups(event: m.ScheduleUpdated) -> bool:
    """A group or schedule changed: an edit or a fleet push carries the crons; an agent's ack
    (versions only) changes nothing listed; an older server's push says nothing: read again."""
    return event.crons is not None or event.version is None


class GroupsTab(HostTab):
    MUTATING = frozenset({"run_now", "copy_now", "new", "edit", "delete"})
    BINDINGS = [
        Binding("r", "run_now", "Run now"),
        Binding("C", "copy_now", "Copy now"),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("ctrl+d", "delete", "Delete"),
    ]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        self.groups: dict[str, SourceGroup] = {}

    def compose(self) -> ComposeResult:
        yield ResourceTable(GROUP_COLUMNS, self.cells, id="groups-table", empty="loading…")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="groups-load")
    async def load(self) -> None:
        try:
            groups = await self.client.source_groups(self.host.id)
        except ApiError as exc:
            self.report(exc, "Cannot load source groups")
            return
        if not self.is_mounted:
            return  # the screen closed while this loaded
        self.groups = {g.id: g for g in groups}
        self.loaded = True
        self.changed()

    def apply(self, event: m.ServerEvent) -> None:
        super().apply(event)
        if isinstance(event, m.ScheduleUpdated) and changes_groups(event):
            self.load()

    def cells(self, gid: str) -> list[Text | str]:
        g = self.groups[gid]
        keep = " ".join(f"{k.removeprefix('keep_')[0]}{v}" if k != "keep_within" else f"within {v}"
                        for k, v in g.retention.model_dump().items() if v)
        return [g.name, ", ".join(g.includes), ", ".join(g.excludes), g.tag or "", keep or "—"]

    def changed(self) -> None:
        """By name; the cursor stays on its group when others are added or removed around it."""
        table = self.table
        if table is None:
            return  # the tab is being taken down
        table.empty = "no source groups yet: press n to add one"
        table.set_rows([g.id for g in sorted(self.groups.values(), key=lambda g: g.name.lower())])
        table.invalidate(None)
        self.post_message(m.GroupsChanged(dict(self.groups)))

    # ------------------------------------------------------------ run now

    def action_run_now(self) -> None:
        gid = self.selected()
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
            self.report(exc, f"Cannot back up {name}")
            return
        self.notify(f"backup of {name} {job.state.value} (job {short_id(job.id)})")
        self.post_message(m.JobsStarted([job]))

    def action_copy_now(self) -> None:
        gid = self.selected()
        if gid:
            self.copy_group(gid)
        else:
            self.notify("This host has no source group to copy", severity="warning")

    @work(exclusive=True, group="run-now")
    async def copy_group(self, group_id: str) -> None:
        name = self.groups[group_id].name if group_id in self.groups else group_id
        try:
            job = await self.client.create_job(self.host.id, {"kind": "copy", "source_group_id": group_id})
        except ApiError as exc:
            self.report(exc, f"Cannot copy {name}")
            return
        self.notify(f"copy of {name} {job.state.value} (job {short_id(job.id)})")
        self.post_message(m.JobsStarted([job]))

    # ------------------------------------------------------------ new / edit / delete

    def action_new(self) -> None:
        self.form({"includes": list(self.host.initial_paths)}, None)

    def action_edit(self) -> None:
        gid = self.selected()
        if gid is None:
            self.notify("No source group selected", severity="warning")
            return
        body = self.groups[gid].model_dump(mode="json", include=set(GROUP_BODY_KEYS), by_alias=True)
        body["retention"] = {k: v for k, v in body["retention"].items() if v is not None}
        self.form(body, gid)

    def form(self, values: dict[str, Any], gid: str | None, error: str | None = None) -> None:
        preview = (self.host.id, self.host.hostname, gid) if gid else None
        self.push_form(SourceGroupForm(values, error, editing=gid is not None, preview=preview),
                       lambda body: self.save(body, gid))

    @work(group="host-save")
    async def save(self, body: dict[str, Any], gid: str | None) -> None:
        try:
            group = await self.client.save_source_group(self.host.id, body, gid)
        except ApiError as exc:
            if self.refused(exc, "Cannot save source group"):
                self.form(body, gid, exc.message)
            return
        self.groups[group.id] = group
        self.changed()
        if (table := self.table) is not None:
            table.move_to(group.id)  # on the group just saved
        self.notify(f"source group {group.name} saved")

    def action_delete(self) -> None:
        gid = self.selected()
        if gid is None:
            self.notify("Nothing selected to delete", severity="warning")
            return
        self.ask(f"Delete source group {self.groups[gid].name!r}? Its snapshots stay "
                 "in the repository.",
                 lambda: self.delete(gid))

    @work(group="host-save")
    async def delete(self, gid: str) -> None:
        try:
            await self.client.delete_source_group(self.host.id, gid)
        except ApiError as exc:
            if exc.status == 401:
                self.report(exc, "Cannot delete")
            else:
                self.notify(conflict_text(exc), title="Cannot delete", severity="error", timeout=10)
            return
        name = self.groups.pop(gid).name
        self.changed()
        self.notify(f"{name} deleted")
