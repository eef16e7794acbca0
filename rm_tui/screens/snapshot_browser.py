"""Browse a snapshot, mark files and directories, restore them: enter opens a directory,
backspace goes up, space marks, `r` restores what is marked, `m` loads more of a long one."""

from __future__ import annotations

import stat
from datetime import datetime
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Footer, Header, Input, Label, Static

from rm_core.jobs import Job
from rm_core.queries import LsEntry, LsPage
from rm_tui.client import ApiError
from rm_tui.format import query_problem, size
from rm_tui.screens.base import ApiScreen
from rm_tui.widgets.check import Check

PAGE = 1000
FIRST = "\0first"  # render_table(cursor_on=FIRST): the first entry of a directory just entered
PROBLEM = "\0problem"  # the row that says why nothing is listed (host offline …): no entry


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def child(path: str, name: str) -> str:
    return f"{path.rstrip('/')}/{name}"


# The packaged systemd unit lets the agent write only below its own paths (ProtectSystem=strict,
# ReadWritePaths=... /var/lib/restic-manager/restore): /var/tmp would be read-only there.
RESTORE_ROOT = "/var/lib/restic-manager/restore"


def default_target(snapshot_id: str, now: datetime | None = None) -> str:
    """A fresh directory: nothing is overwritten unless the operator asks for it."""
    return f"{RESTORE_ROOT}/restore-{snapshot_id[:8]}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


class EntryTable(DataTable[str]):
    """The listing: `enter` is the screen's (Open dir, in the footer), not DataTable's hidden select."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return False if action == "select_cursor" else super().check_action(action, parameters)


class SnapshotBrowser(ApiScreen):
    CSS_PATH = "snapshot_browser.tcss"
    MUTATING = frozenset({"restore"})
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("enter", "open", "Open dir", key_display="enter"),
        Binding("backspace", "up", "Up", key_display="backspace"),
        Binding("space", "mark", "Mark"),
        Binding("m", "more", "More entries", show=False),  # the path line says when there are more
        Binding("r", "restore", "Restore"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("j", "cursor(1)", "Cursor down", show=False),
        Binding("k", "cursor(-1)", "Cursor up", show=False),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, host_id: str, hostname: str, snapshot_id: str, path: str = "/") -> None:
        super().__init__()
        self.host_id = host_id
        self.hostname = hostname
        self.snapshot_id = snapshot_id
        self.path = path
        self.entries: list[LsEntry] = []
        self.next_after: str | None = None
        self.marked: set[str] = set()
        self.loads = 0
        self.problem: str | None = None  # why the last listing was refused, shown in the table

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="browse-path")
        yield EntryTable(id="entries", cursor_type="row", zebra_stripes=True)
        yield Static(id="browse-marked")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.hostname} · snapshot {self.snapshot_id[:8]}"
        table = self.query_one("#entries", DataTable)
        for label, key, width in (("", "mark", 1), ("name", "name", 48), ("type", "type", 7),
                                  ("size", "size", 10), ("mode", "mode", 10), ("modified", "mtime", 19)):
            table.add_column(label, key=key, width=width)
        table.focus()
        self.load(self.path)

    # ------------------------------------------------------------ loading

    @work(exclusive=True, group="snapshot-ls")
    async def load(self, path: str, after: str | None = None, cursor_on: str | None = None) -> None:
        """One page of `path`; a new directory puts the cursor on its first entry, or on
        `cursor_on` (the directory just left, going up); `m` (after=…) keeps it where it is."""
        params = {"path": path, "limit": str(PAGE)}
        if after:
            params["after"] = after
        try:
            body = await self.client.request("GET", f"/hosts/{self.host_id}/snapshots/{self.snapshot_id}/ls",
                                             params=params)
        except ApiError as exc:
            self.report(exc, f"cannot list {path}")
            if exc.status != 401:
                self.show_problem(query_problem(exc.code, exc.status, exc.message, self.hostname, self.host_id),
                                  "host offline" if exc.code == "host_offline" else "not listed")
            return
        self.problem = None
        page = LsPage.model_validate(body)
        if after is None:
            self.path, self.entries = page.path, []
        self.entries += page.entries
        self.next_after = page.next_after if page.truncated else None
        self.loads += 1
        self.render_table(None if after else (cursor_on or FIRST))

    def render_table(self, cursor_on: str | None = None) -> None:
        """The listing again; the cursor stays on its row, or goes to `cursor_on` (a key, or FIRST)."""
        table = self.query_one("#entries", DataTable)
        row = table.cursor_row
        table.clear()
        if self.path != "/":
            table.add_row("", "..", "dir", "", "", "", key="..")
        for e in self.entries:
            full = child(self.path, e.name)
            table.add_row("*" if full in self.marked else "", e.name + ("/" if e.type == "dir" else ""), e.type,
                          size(e.size) if e.type == "file" else "", stat.filemode(e.mode) if e.mode else "",
                          e.mtime.astimezone().strftime("%Y-%m-%d %H:%M:%S") if e.mtime else "", key=full)
        if cursor_on == FIRST:
            row = 1 if self.path != "/" and self.entries else 0  # the first entry, not ".."
        elif cursor_on is not None and cursor_on in self.keys():
            row = table.get_row_index(cursor_on)
        table.move_cursor(row=min(row, max(table.row_count - 1, 0)))
        more = f" · {len(self.entries)} shown, more with m" if self.next_after else f" · {len(self.entries)} entries"
        self.query_one("#browse-path", Static).update(f"{self.path}{more}")
        self.query_one("#browse-marked", Static).update(
            f"marked: {len(self.marked)} — " + ", ".join(sorted(self.marked)[:4]) if self.marked else
            "space marks files and directories; r restores them")

    def show_problem(self, problem: str, short: str) -> None:
        """The refusal stays in the table (the toast fades): "host offline" there, the path
        line says it in full; ctrl+r asks again."""
        self.problem = problem
        table = self.query_one("#entries", DataTable)
        table.clear()
        table.add_row("", f"{short} · ctrl+r tries again", "", "", "", "", key=PROBLEM)
        self.query_one("#browse-path", Static).update(f"{self.path} · {problem}")

    def action_reload(self) -> None:
        self.load(self.path)

    def keys(self) -> set[str]:
        return {child(self.path, e.name) for e in self.entries}

    def current(self) -> tuple[str, LsEntry | None] | None:
        table = self.query_one("#entries", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key == PROBLEM:
            return None
        if key == "..":
            return "..", None
        if key is None:
            return None
        name = key.rsplit("/", 1)[-1]
        return key, next((e for e in self.entries if e.name == name), None)

    # ------------------------------------------------------------ actions

    def action_open(self) -> None:
        cur = self.current()
        if cur is None:
            return
        key, entry = cur
        if key == "..":
            self.action_up()
        elif entry is not None and entry.type == "dir":
            self.load(key)

    @on(DataTable.RowSelected)
    def selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_up(self) -> None:
        if self.path != "/":
            self.load(parent(self.path), cursor_on=self.path)

    def action_cursor(self, delta: int) -> None:
        table = self.query_one("#entries", DataTable)
        table.move_cursor(row=max(0, min(table.cursor_row + delta, table.row_count - 1)))

    def action_mark(self) -> None:
        cur = self.current()
        if cur is None or cur[0] == "..":
            return
        self.marked ^= {cur[0]}
        self.render_table()
        table = self.query_one("#entries", DataTable)
        table.move_cursor(row=min(table.cursor_row + 1, table.row_count - 1))

    def action_more(self) -> None:
        if self.next_after:
            self.load(self.path, self.next_after)

    def action_restore(self) -> None:
        if not self.marked:
            self.notify("mark files or directories with space first", severity="warning")
            return
        self.app.push_screen(RestoreDialog(self.hostname, self.snapshot_id, sorted(self.marked)), self.restore_to)

    def restore_to(self, choice: dict[str, Any] | None) -> None:
        """The dialog's answer: where to restore, or None when it was cancelled."""
        if choice:
            self.restore(choice)

    @work(group="restore")
    async def restore(self, choice: dict[str, Any]) -> None:
        body = {"kind": "restore", "snapshot_id": self.snapshot_id, "paths": sorted(self.marked), **choice}
        try:
            job = Job.model_validate(await self.client.request("POST", f"/hosts/{self.host_id}/jobs", json=body))
        except ApiError as exc:
            self.report(exc, "restore not started")
            return
        from rm_tui.screens.job_log import JobLogScreen

        self.marked.clear()
        self.render_table()
        self.app.push_screen(JobLogScreen(job, self.hostname))  # its live log and progress at once


class RestoreDialog(ModalScreen[dict[str, Any] | None]):
    """Where to: a fresh directory by default; over the original files only when chosen and
    confirmed by typing the host's name."""

    CSS_PATH = "snapshot_browser.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, hostname: str, snapshot_id: str, paths: list[str]) -> None:
        super().__init__()
        self.hostname = hostname
        self.snapshot_id = snapshot_id
        self.paths = paths

    def compose(self) -> ComposeResult:
        with Vertical(id="restore-box", classes="dialog"):
            yield Label(f"Restore {len(self.paths)} marked path(s) from snapshot {self.snapshot_id[:8]}")
            yield Label("target directory (the paths land below it)")
            yield Input(default_target(self.snapshot_id), id="target")
            yield Check("verify: restic re-reads and compares what it wrote", True, id="verify")
            yield Check("restore over the ORIGINAL files (target /)", False, id="in-place")
            yield Input(placeholder=f"type {self.hostname} to overwrite its files", id="confirm")
            yield Label("", id="restore-problem")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Restore", variant="primary", id="go")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#confirm", Input).display = False
        self.query_one("#target", Input).focus()

    @on(Checkbox.Changed, "#in-place")
    def in_place(self, event: Checkbox.Changed) -> None:
        self.query_one("#confirm", Input).display = event.value
        self.query_one("#target", Input).disabled = event.value

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#go")
    @on(Input.Submitted)
    def go(self) -> None:
        problem = self.query_one("#restore-problem", Label)
        verify = self.query_one("#verify", Checkbox).value
        if self.query_one("#in-place", Checkbox).value:
            if self.query_one("#confirm", Input).value.strip() != self.hostname:
                problem.update(f"type the host name {self.hostname!r} to restore over its original files")
                return
            self.dismiss({"target": "/", "verify": verify})
            return
        target = self.query_one("#target", Input).value.strip()
        if not target.startswith("/") or target == "/":
            problem.update("the target must be an absolute directory other than / (or choose the original files)")
            return
        self.dismiss({"target": target, "verify": verify})
