"""The audit log, newest first, a page at a time; the newest page follows new entries live.
Under the table the entry under the cursor in full; `enter` opens it (AuditEntryScreen)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Static

from rm_core.api import AuditEntry
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import age, short_ids, when
from rm_tui.screens.base import TableScreen
from rm_tui.widgets.table import Column, ResourceTable

AUDIT_PAGE = 100
AUDIT_COLUMNS = [Column("id", "#", 7), Column("ts", "When", 26), Column("actor", "Who", 20),
                 Column("action", "Action", 22), Column("target", "Target", 16), Column("details", "Details", 0)]


def stamp(ts: datetime | None) -> str:
    """'14:03:12 · 5m ago': the exact time an audit asks for, and how long ago at a glance."""
    return f"{when(ts)} · {age(ts)} ago" if ts else "—"


def detail_text(details: dict[str, Any]) -> str:
    """`k=v, …` with ids as the 8 characters shown everywhere else and lists comma-joined."""
    parts = []
    for k, v in details.items():
        shown = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
        parts.append(f"{k}={shown}")
    return short_ids("; ".join(parts))


class AuditScreen(TableScreen):
    """Newest first, a page at a time: `]` older, `[` newer. The newest page follows
    `audit.appended` live; the cursor stays on its entry as new ones arrive above it."""

    CSS_PATH = "tables.tcss"
    TABLE_ID = "audit"
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("enter", "open", "Open", key_display="enter"),
        Binding("right_square_bracket", "older", "Older", key_display="]"),
        Binding("left_square_bracket", "newer", "Newer", key_display="["),
        Binding("ctrl+r", "reload", "Newest"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, page_size: int | None = None) -> None:
        super().__init__()
        self.page_size = page_size or AUDIT_PAGE
        self.cursors: list[int | None] = [None]  # `before` of each page seen; the last is the one shown
        self.entries: list[AuditEntry] = []
        self.by_key: dict[str, AuditEntry] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="audit-status", classes="screen-hint")
        yield ResourceTable(AUDIT_COLUMNS, self.cells, id="audit", empty="loading the audit log…")
        yield Static("", id="audit-detail", classes="screen-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Audit"
        self.load()
        self.set_interval(30, lambda: self.table.invalidate(None))  # "5m ago" grows with the clock

    def cells(self, key: str) -> list[Text | str]:
        e = self.by_key[key]
        who = e.actor_name or e.actor_id or e.actor_kind
        return [str(e.id), stamp(e.ts), f"{e.actor_kind}:{short_ids(who)}", e.action, short_ids(e.target or "—"),
                detail_text(e.details)]

    @work(exclusive=True, group="audit-load")
    async def load(self, keep_key: bool = False) -> None:
        try:
            entries = await self.client.audit(self.page_size, self.cursors[-1])
        except ApiError as exc:
            self.report(exc, "Cannot read the audit log")
            return
        if not entries and len(self.cursors) > 1:
            self.cursors.pop()
            self.notify("no older entries", timeout=2)
            return
        self.table.empty = "the audit log is empty"
        self.show_entries(entries, keep_key)

    def show_entries(self, entries: list[AuditEntry], keep_key: bool) -> None:
        self.entries = entries
        self.by_key = {str(e.id): e for e in entries}
        self.show([str(e.id) for e in entries], keep_key=keep_key)
        span = f"#{entries[0].id}–#{entries[-1].id}" if entries else "empty"
        live = "  ·  live" if len(self.cursors) == 1 else ""
        self.query_one("#audit-status", Static).update(
            f"page {len(self.cursors)} ({span}, newest first){live}  ·  ] older  ·  [ newer")
        self.describe(self.table.cursor_key)

    def on_resource_table_highlighted(self, message: ResourceTable.Highlighted) -> None:
        self.describe(message.key)

    def describe(self, key: str | None) -> None:
        """The entry under the cursor, below the table: the Details a narrow column cuts short."""
        e = self.by_key.get(key or "")
        text = Text()
        if e is not None:
            text.append(f"#{e.id} · {e.action} {e.target or ''} · ", style="bold")
            text.append(detail_text(e.details) or "no details")
            text.append("  (enter: the entry in full)", style="dim")
        self.query_one("#audit-detail", Static).update(text)

    def action_open(self) -> None:
        e = self.by_key.get(self.table.cursor_key or "")
        if e is not None:
            self.app.push_screen(AuditEntryScreen(e))

    def on_audit_appended(self, message: m.AuditAppended) -> None:
        if len(self.cursors) > 1 or any(e.id == message.entry.id for e in self.entries):
            return  # an older page stays as it was
        self.show_entries([message.entry, *self.entries][:self.page_size], keep_key=True)

    def on_events_connected(self, _: m.EventsConnected) -> None:
        if len(self.cursors) == 1 and self.entries:
            self.load(keep_key=True)  # what was appended while the stream was down

    def action_older(self) -> None:
        if self.entries and len(self.entries) == self.page_size:
            self.cursors.append(self.entries[-1].id)
            self.load()
        else:
            self.notify("this is the oldest page", timeout=2)

    def action_newer(self) -> None:
        if len(self.cursors) > 1:
            self.cursors.pop()
            self.load()

    def action_reload(self) -> None:
        self.cursors = [None]
        self.load(keep_key=True)


def entry_text(e: AuditEntry) -> Text:
    """Every field of one entry, ids in full, one detail a line (nested values as JSON)."""
    text = Text()
    rows = [("#", str(e.id)), ("when", f"{e.ts.isoformat()} ({stamp(e.ts)})"),
            ("who", f"{e.actor_kind}:{e.actor_name or ''}" + (f" (id {e.actor_id})" if e.actor_id else "")),
            ("action", e.action), ("target", e.target or "—")]
    for label, value in rows:
        text.append(f"{label:<8}", style="bold")
        text.append(f"{value}\n")
    text.append("details\n" if e.details else "details none\n", style="bold")
    for k, v in e.details.items():
        shown = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        text.append(f"  {k}: ", style="bold")
        text.append(f"{shown}\n")
    return text


class AuditEntryScreen(ModalScreen[None]):
    """One audit entry in full: nothing cut, ids as they are stored."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "close", "Close"), Binding("enter", "close", "Close", show=False)]

    def __init__(self, entry: AuditEntry) -> None:
        super().__init__()
        self.entry = entry

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="audit-entry-box", classes="dialog"):
            yield Static(f"Audit entry #{self.entry.id}", classes="form-title")
            yield Static(entry_text(self.entry), id="audit-entry")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
