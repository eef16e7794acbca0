"""The snapshots tab: newest first; browse one (enter), diff two (d, then d on the other)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from rm_core import restic as R
from rm_core.api import Host, Snapshot
from rm_core.enums import JobKind
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import size, when
from rm_tui.host_tabs.base import HostTab
from rm_tui.screens.snapshot_browser import SnapshotBrowser
from rm_tui.screens.snapshot_diff import SnapshotDiffScreen
from rm_tui.widgets.table import Column, ResourceTable

HINT = "enter browse · d on one snapshot, then d on another: what changed between them"
SNAPSHOT_COLUMNS = [Column("id", "Snapshot", 10), Column("time", "Time", 16), Column("paths", "Paths", 0),
                    Column("tags", "Tags", 12), Column("added", "Added", 10), Column("total", "Size", 10)]
# jobs whose end changes the snapshot list and the repository's stats
CHANGES_REPO = (JobKind.backup, JobKind.forget, JobKind.prune)


class SnapshotsTab(HostTab):
    BINDINGS = [
        Binding("enter", "browse", "Browse", key_display="enter"),
        Binding("b", "browse", "Browse snapshot", show=False),
        # one key, two steps: the footer says which one comes next
        Binding("d", "diff_from", "Diff from here"),
        Binding("d", "diff_to", "Diff to here"),
        Binding("escape", "cancel_pick", "Cancel diff"),
    ]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        self.snapshots: dict[str, Snapshot] = {}
        self.diff_from: str | None = None  # the snapshot picked first for a diff

    def compose(self) -> ComposeResult:
        yield ResourceTable(SNAPSHOT_COLUMNS, self.cells, id="snapshots-table", empty="loading…")
        yield Static(HINT, id="snapshots-hint", classes="tab-hint")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="snapshots-load")
    async def load(self) -> None:
        try:
            snapshots = await self.client.snapshots(self.host.id)
        except ApiError as exc:
            self.report(exc, "Cannot load snapshots")
            return
        if not self.is_mounted:
            return  # the screen closed while this loaded
        self.snapshots = {s.id: s for s in snapshots}
        self.loaded = True
        self.render_rows()
        self.post_message(m.SnapshotsChanged(len(snapshots), max(snapshots, key=lambda s: s.time, default=None)))

    def apply(self, event: m.ServerEvent) -> None:
        super().apply(event)
        if isinstance(event, m.JobUpdated) and event.job.state.terminal and event.job.kind in CHANGES_REPO:
            self.load()

    def cells(self, snapshot_id: str) -> list[Text | str]:
        s = self.snapshots[snapshot_id]
        summary = s.summary or {}
        added = summary.get("data_added")
        total = summary.get("total_bytes_processed")
        short = s.short_id or s.id[:8]
        # no summary: restic < 0.17 keeps none in a snapshot, and no backup job of this server
        # made it (the server lends a job's summary to its snapshot): "n/a", said in the hint
        unknown = "n/a" if s.summary is None else "—"
        return [f"◆ {short}" if s.id == self.diff_from else short, when(s.time), ", ".join(s.paths),
                ", ".join(s.tags), size(added) if isinstance(added, int) else unknown,
                size(total) if isinstance(total, int) else unknown]

    def hint(self) -> str:
        if self.diff_from:
            return (f"[reverse] diff from {self.diff_from[:8]} [/] move to the other snapshot and press d "
                    "(d on the same one or esc cancels)")
        if not any(s.summary is None for s in self.snapshots.values()):
            return HINT
        version = R.parse_version(f"restic {self.host.restic_version or ''}")
        on = f"restic {self.host.restic_version}" if version and version < (0, 17, 0) else "restic before 0.17"
        return (f"{HINT}\nAdded and Size n/a on {on}: a snapshot keeps no sizes there; "
                "they are shown for the backups this server ran")

    def render_rows(self) -> None:
        """Newest first; the cursor stays on its snapshot when a newer one arrives above it."""
        table, hint = self.table, self.part("#snapshots-hint", Static)
        if table is None or hint is None:
            return  # the tab is being taken down
        table.empty = "no snapshots yet"
        table.set_rows([s.id for s in sorted(self.snapshots.values(), key=lambda s: s.time, reverse=True)])
        table.invalidate(None)
        hint.update(self.hint())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("diff_from", "diff_to") and (self.diff_from is None) != (action == "diff_from"):
            return False
        if action == "cancel_pick" and self.diff_from is None:
            return False  # esc goes on to the screen: back
        return super().check_action(action, parameters)

    def action_browse(self) -> None:
        """Open the snapshot under the cursor: browse, mark, restore (screens/snapshot_browser.py)."""
        snapshot_id = self.selected()
        if snapshot_id is None:
            self.notify("No snapshot selected (snapshots tab)", severity="warning")
            return
        self.app.push_screen(SnapshotBrowser(self.host.id, self.host.hostname, snapshot_id))

    def action_diff_from(self) -> None:
        snapshot_id = self.selected()
        if snapshot_id is None:
            self.notify("This host has no snapshot yet", severity="warning")
            return
        self.pick(snapshot_id)

    def action_diff_to(self) -> None:
        first, second = self.diff_from, self.selected()
        self.pick(None)
        if second is None or second == first:
            return  # d twice on the same snapshot: the pick is undone
        a, b = self.snapshots.get(first or ""), self.snapshots.get(second)
        if a is None or b is None:
            self.notify("that snapshot is gone (forgotten meanwhile?)", severity="warning")
            return
        older, newer = sorted((a, b), key=lambda s: s.time)  # a diff reads from the older to the newer
        self.app.push_screen(SnapshotDiffScreen(self.host.id, self.host.hostname, (older.id, older.time),
                                                (newer.id, newer.time)))

    def action_cancel_pick(self) -> None:
        self.pick(None)

    def pick(self, snapshot_id: str | None) -> None:
        self.diff_from = snapshot_id
        self.render_rows()
        self.refresh_bindings()  # the footer says d "Diff from here" or "Diff to here"
