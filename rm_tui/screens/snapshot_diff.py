"""What changed between two snapshots of a host (`restic diff`, asked of its agent live):
the summary in words, then every changed path as +, -, M, T or U in a ResourceTable.

The server caps the paths it returns (`limit`); when it says `truncated`, the screen says how
many of how many are shown, and `m` asks again for as many as the server allows."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from rm_core.queries import DEFAULT_DIFF_LIMIT, MAX_DIFF_LIMIT, DiffChange, DiffResult
from rm_tui.format import diff_summary, when
from rm_tui.screens.base import ApiScreen, ask_agent
from rm_tui.widgets.table import Column, ResourceTable

COLUMNS = [Column("change", "", 2), Column("kind", "Change", 12), Column("path", "Path", 0)]
CHANGE_STYLE = {"added": "green", "removed": "red", "modified": "yellow", "type_changed": "magenta",
                "metadata": "dim"}
LETTER = {"added": "+", "removed": "-", "modified": "M", "type_changed": "T", "metadata": "U"}


class SnapshotDiffScreen(ApiScreen):
    CSS_PATH = "snapshot_browser.tcss"
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("m", "more", "More paths"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, host_id: str, hostname: str, older: tuple[str, datetime | None],
                 newer: tuple[str, datetime | None]) -> None:
        super().__init__()
        self.host_id = host_id
        self.hostname = hostname
        self.older, self.newer = older, newer
        self.limit = DEFAULT_DIFF_LIMIT
        self.result: DiffResult | None = None
        self.rows: dict[str, DiffChange] = {}
        self.problem: str | None = None  # why the diff could not be made, in words
        self.loads = 0  # finished attempts, answered or refused (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="diff-title", classes="diff-line")
        yield Static("asking the agent for the diff…", id="diff-summary")
        yield ResourceTable(COLUMNS, self.cells, id="diff-changes", empty="waiting for the agent…")
        yield Static(id="diff-cap", classes="diff-line")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.hostname} · diff {self.older[0][:8]} → {self.newer[0][:8]}"
        self.query_one("#diff-title", Static).update(
            f"from [b]{self.older[0][:8]}[/] ({when(self.older[1])})  →  to [b]{self.newer[0][:8]}[/] "
            f"({when(self.newer[1])})")
        self.query_one("#diff-changes", ResourceTable).focus()
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "more" and not (self.result and self.result.truncated and self.limit < MAX_DIFF_LIMIT):
            return False
        return super().check_action(action, parameters)

    @work(exclusive=True, group="snapshot-diff")
    async def load(self) -> None:
        params = {"from": self.older[0], "to": self.newer[0], "limit": str(self.limit)}
        result = await ask_agent(self, self.client.request(
            "GET", f"/hosts/{self.host_id}/snapshots/diff", params=params), DiffResult, "diff")
        if result is None:
            return
        self.result, self.problem = result, None
        self.loads += 1
        self.render_result()

    def show_problem(self, text: str) -> None:
        self.problem = text
        self.loads += 1
        summary = self.query_one("#diff-summary", Static)
        summary.add_class("error")
        summary.update(Text(f"no diff: {text}"))
        table = self.query_one("#diff-changes", ResourceTable)
        self.result, self.rows, table.empty = None, {}, "no diff to show (see above); ctrl+r tries again"
        table.set_rows([], keep_key=False)
        table.invalidate(None)
        self.query_one("#diff-cap", Static).update("")
        self.refresh_bindings()
        self.notify(text, title="Cannot diff the snapshots", severity="error")

    def render_result(self) -> None:
        r = self.result
        assert r is not None
        summary = self.query_one("#diff-summary", Static)
        summary.remove_class("error")
        summary.update("\n".join(diff_summary(r.summary, r.counts)))
        table = self.query_one("#diff-changes", ResourceTable)
        table.empty = "no changed paths: the two snapshots hold the same files"
        self.rows = {str(i): c for i, c in enumerate(r.changes)}
        table.set_rows(list(self.rows), keep_key=False)
        table.invalidate(None)
        self.query_one("#diff-cap", Static).update(self.cap_text(r))
        self.refresh_bindings()

    def cap_text(self, r: DiffResult) -> str:
        total = max(r.total_changes, len(r.changes))
        if not r.truncated:
            return f"{total:,} changed path{'s' if total != 1 else ''}, all shown"
        text = f"[yellow]showing {len(r.changes):,} of {total:,} changed paths[/] (the server returned at most " \
               f"{self.limit:,})"
        if self.limit < MAX_DIFF_LIMIT:
            return text + f"; m asks for up to {MAX_DIFF_LIMIT:,}"
        return text + f"; {MAX_DIFF_LIMIT:,} is the most it sends: run restic diff on the host for the rest"

    def cells(self, key: str) -> list[Text | str]:
        c: DiffChange = self.rows[key]
        style = CHANGE_STYLE.get(c.change, "")
        return [Text(LETTER.get(c.change, c.modifier or "?"), style=style),
                Text(c.change.replace("_", " "), style=style), c.path]

    def action_more(self) -> None:
        self.limit = MAX_DIFF_LIMIT
        self.load()

    def action_reload(self) -> None:
        self.load()
