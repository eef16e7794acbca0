"""What `restic forget --dry-run` would keep and remove with a retention policy as typed in the
source group form, before it is saved (POST .../retention-preview, run live by the agent).

Nothing changes on the server or in the repository: `esc` goes back to the form, where the
operator saves or cancels."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from rm_core.queries import RetentionPreview, RetentionSnapshot
from rm_tui.format import plural, when
from rm_tui.screens.base import ask_agent, console
from rm_tui.widgets.table import Column, ResourceTable

COLUMNS = [Column("action", "Action", 7), Column("id", "Snapshot", 9), Column("time", "Time", 17),
           Column("paths", "Paths", 24), Column("reasons", "Kept because", 0)]


def policy_text(retention: dict[str, Any]) -> str:
    """{'keep_last': 3, 'keep_daily': 7} -> 'last 3 · daily 7'."""
    return " · ".join(f"{k.removeprefix('keep_')} {v}" for k, v in retention.items() if v is not None) or "empty"


def per_group(preview: RetentionPreview) -> list[tuple[str, int, int]]:
    """(paths, kept, removed) per restic group: forget groups snapshots by host and paths, so a
    group whose paths changed over time has its policy applied to each set of paths apart."""
    groups: dict[str, list[int]] = {}
    for snap in [*preview.keep, *preview.remove]:
        counts = groups.setdefault(", ".join(snap.paths) or "—", [0, 0])
        counts[snap.action == "remove"] += 1
    return [(paths, kept, removed) for paths, (kept, removed) in sorted(groups.items())]


class RetentionPreviewScreen(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "close", "Back to the form")]

    def __init__(self, host_id: str, hostname: str, group_id: str, group_name: str,
                 retention: dict[str, Any]) -> None:
        super().__init__()
        self.host_id, self.hostname = host_id, hostname
        self.group_id, self.group_name = group_id, group_name
        self.retention = {k: v for k, v in retention.items() if v is not None}
        self.preview: RetentionPreview | None = None
        self.problem: str | None = None
        self.rows: dict[str, RetentionSnapshot] = {}
        self.loads = 0  # finished attempts, answered or refused (tests wait on it)

    def compose(self) -> ComposeResult:
        with Vertical(id="preview-box", classes="dialog"):
            yield Label(f"Retention preview: {self.group_name} on {self.hostname}", classes="form-title")
            yield Static(f"policy as typed (not saved): {policy_text(self.retention)}", classes="form-hint")
            yield Static("asking the agent (restic forget --dry-run)…", id="preview-summary")
            yield ResourceTable(COLUMNS, self.cells, id="preview-table", empty="waiting for the agent…")
            yield Static("nothing was changed: esc goes back to the form, where ctrl+s saves the policy",
                         classes="form-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#preview-table", ResourceTable).focus()
        self.load()

    @work(exclusive=True, group="retention-preview")
    async def load(self) -> None:
        client = console(self).client
        preview = await ask_agent(self, client.request(
            "POST", f"/hosts/{self.host_id}/source-groups/{self.group_id}/retention-preview",
            json={"retention": self.retention}), RetentionPreview, "retention preview")
        if preview is None:
            return
        self.preview = preview
        self.loads += 1
        self.render_preview()

    def show_problem(self, text: str) -> None:
        self.problem = text
        self.loads += 1
        summary = self.query_one("#preview-summary", Static)
        summary.add_class("field-error")
        summary.update(Text(f"no preview: {text}"))
        self.query_one("#preview-table", ResourceTable).empty = "no preview to show (see above)"
        self.query_one("#preview-table", ResourceTable).refresh()

    def render_preview(self) -> None:
        p = self.preview
        assert p is not None
        lines = [f"[b]keeps {plural(p.keep_count, 'snapshot')}[/], "
                 f"[{'bold red' if p.remove_count else 'green'}]removes {plural(p.remove_count, 'snapshot')}[/]"]
        groups = per_group(p)
        if len(groups) > 1:
            lines += [f"  {paths}: keeps {kept}, removes {removed}" for paths, kept, removed in groups]
        self.query_one("#preview-summary", Static).update("\n".join(lines))
        snaps = sorted([*p.remove, *p.keep], key=lambda s: (s.time is None, s.time), reverse=True)
        self.rows = {f"{s.action}:{s.id}": s for s in snaps}
        table = self.query_one("#preview-table", ResourceTable)
        table.empty = "no snapshots of this group yet"
        table.set_rows(list(self.rows), keep_key=False)
        table.invalidate(None)

    def cells(self, key: str) -> list[Text | str]:
        s = self.rows[key]
        action = Text(s.action, style="bold red" if s.action == "remove" else "green")
        return [action, s.short_id or s.id[:8], when(s.time), ", ".join(s.paths), ", ".join(s.reasons)]

    def action_close(self) -> None:
        self.dismiss(None)
