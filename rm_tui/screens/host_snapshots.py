"""The host screen's Snapshots tab: browse one snapshot (b/enter), diff two (d, then d again).

A mixin of HostScreen (it uses the screen's client, host, snapshots and query helpers), split
out like host_groups and host_settings so that each module holds one concern."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rm_core.api import Snapshot
from rm_tui.format import size, when
from rm_tui.screens.snapshot_browser import SnapshotBrowser
from rm_tui.screens.snapshot_diff import SnapshotDiffScreen
from rm_tui.widgets.table import Column, ResourceTable

HINT = "b/enter browse · d on one snapshot, then d on another: what changed between them"
SNAPSHOT_COLUMNS = [Column("id", "Snapshot", 10), Column("time", "Time", 16), Column("paths", "Paths", 0),
                    Column("tags", "Tags", 12), Column("added", "Added", 10), Column("total", "Size", 10)]


class SnapshotsTab:
    snapshots: list[Snapshot]
    snapshot_by_id: dict[str, Snapshot]  # the rows of the table, as render_snapshots last saw them
    diff_from: str | None  # the snapshot picked first for a diff

    def snapshot_cells(self, snapshot_id: str) -> list[Text | str]:
        s = self.snapshot_by_id[snapshot_id]
        summary = s.summary or {}
        added = summary.get("data_added")
        total = summary.get("total_bytes_processed")
        short = s.short_id or s.id[:8]
        return [f"◆ {short}" if s.id == self.diff_from else short, when(s.time), ", ".join(s.paths),
                ", ".join(s.tags), size(added) if isinstance(added, int) else "—",
                size(total) if isinstance(total, int) else "—"]

    def render_snapshots(self) -> None:
        """Newest first; the cursor stays on its snapshot when a newer one arrives above it."""
        self.snapshot_by_id = {s.id: s for s in self.snapshots}
        table = self.query_one("#snapshots-table", ResourceTable)
        table.empty = "no snapshots yet"
        table.set_rows([s.id for s in sorted(self.snapshots, key=lambda s: s.time, reverse=True)])
        table.invalidate(None)
        self.render_snapshot_hint()

    def render_snapshot_hint(self) -> None:
        hint = self.query_one("#snapshots-hint", Static)
        if self.diff_from:
            hint.update(f"[reverse] diff from {self.diff_from[:8]} [/] move to the other snapshot and press d "
                        "(d on the same one or esc cancels)")
        else:
            hint.update(HINT)

    def action_browse(self) -> None:
        """Open the snapshot under the cursor: browse, mark, restore (screens/snapshot_browser.py)."""
        snapshot_id = self.selected("snapshots")
        if snapshot_id is None:
            self.notify("No snapshot selected (snapshots tab)", severity="warning")
            return
        self.app.push_screen(SnapshotBrowser(self.host.id, self.host.hostname, snapshot_id))

    def action_diff_from(self) -> None:
        snapshot_id = self.selected("snapshots")
        if snapshot_id is None:
            self.notify("This host has no snapshot yet", severity="warning")
            return
        self.diff_from = snapshot_id
        self.after_pick()

    def action_diff_to(self) -> None:
        first, second = self.diff_from, self.selected("snapshots")
        self.diff_from = None
        self.after_pick()
        if second is None or second == first:
            return  # d twice on the same snapshot: the pick is undone
        a, b = self.snapshot_by_id.get(first or ""), self.snapshot_by_id.get(second)
        if a is None or b is None:
            self.notify("that snapshot is gone (forgotten meanwhile?)", severity="warning")
            return
        older, newer = sorted((a, b), key=lambda s: s.time)  # a diff reads from the older to the newer
        self.app.push_screen(SnapshotDiffScreen(self.host.id, self.host.hostname, (older.id, older.time),
                                                (newer.id, newer.time)))

    def after_pick(self) -> None:
        self.render_snapshots()
        self.refresh_bindings()  # the footer says d "Diff from here" or "Diff to here"

    def action_back(self) -> None:
        if self.diff_from:
            self.diff_from = None
            self.after_pick()
            return
        self.app.pop_screen()
