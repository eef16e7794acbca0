"""Enrollment tokens, the audit log and operator accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Header, Label, Static

from rm_core.api import AuditEntry, EnrollmentToken, EnrollmentTokenCreated, Operator
from rm_tui.client import ApiError
from rm_tui import messages as m
from rm_tui.format import age, plural, short_ids, when
from rm_tui.screens.base import ApiScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import EnrollmentForm, OperatorForm
from rm_tui.widgets.table import Column, ResourceTable

AUDIT_PAGE = 100


TOKEN_COLUMNS = [Column("name", "Name", 20), Column("created", "Created", 16), Column("expires", "Expires", 16),
                 Column("uses", "Uses", 7), Column("repo", "Repo", 5), Column("paths", "Initial paths", 0)]
AUDIT_COLUMNS = [Column("id", "#", 7), Column("ts", "When", 26), Column("actor", "Who", 20),
                 Column("action", "Action", 22), Column("target", "Target", 16), Column("details", "Details", 0)]
OPERATOR_COLUMNS = [Column("username", "Username", 24), Column("role", "Role", 10), Column("state", "State", 10),
                    Column("created", "Created", 0)]


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


class TableScreen(ApiScreen):
    """A list screen around one ResourceTable: the table has focus on open and again when a
    form, dialog or the next screen closes, so arrows and j/k/g/G always move its cursor."""

    TABLE_ID = ""

    @property
    def table(self) -> ResourceTable:
        return self.query_one(f"#{self.TABLE_ID}", ResourceTable)

    def on_mount(self) -> None:  # Textual calls this as well as the subclass's own on_mount
        self.table.focus()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.table.focus()

    def show(self, keys: list[str], keep_key: bool = True) -> None:
        """New rows in this order; the cursor stays on its row when others are inserted around it."""
        self.table.set_rows(keys, keep_key=keep_key)
        self.table.invalidate(None)


class SecretDialog(ModalScreen[None]):
    """The install command and token of a new enrollment token: shown this once."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS = [
        Binding("c", "copy('install_command')", "Copy command"),
        Binding("t", "copy('token')", "Copy token"),
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
    ]

    def __init__(self, created: EnrollmentTokenCreated) -> None:
        super().__init__()
        self.created = created

    def compose(self) -> ComposeResult:
        c = self.created
        with Vertical(id="secret-box", classes="dialog"):
            yield Label(f"Enrollment token {c.name or ''} created", classes="form-title")
            yield Label("Run this on the new host (as root):")
            yield Static(Text(c.install_command), id="install-command")
            yield Label("Token (shown only now; the server keeps a hash):")
            yield Static(Text(c.token), id="token-value")
            yield Label(f"valid until {when(c.expires_at)} · {plural(c.max_uses, 'use')}", classes="form-hint")
            yield Label("c copy command · t copy token (terminal clipboard, OSC 52) · esc close", classes="form-hint")
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close")
        yield Footer()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self, what: str) -> None:
        self.app.copy_to_clipboard(getattr(self.created, what))
        self.notify(f"{what.replace('_', ' ')} copied to the clipboard", timeout=3)


class EnrollmentScreen(TableScreen):
    CSS_PATH = "admin.tcss"
    TABLE_ID = "tokens"
    MUTATING = frozenset({"new", "delete"})
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("n", "new", "New token"),
        Binding("ctrl+d", "delete", "Revoke"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self, open_form: bool = False) -> None:
        super().__init__()
        self.open_form = open_form
        self.tokens: dict[str, EnrollmentToken] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Enrollment tokens let a new host join: create one, run its install command on the host.",
                     classes="screen-hint")
        yield ResourceTable(TOKEN_COLUMNS, self.cells, id="tokens", empty="loading tokens…")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Enrollment"
        self.load()
        if self.open_form and not self.readonly:
            self.action_new()

    def cells(self, token_id: str) -> list[Text | str]:
        t = self.tokens[token_id]
        return [t.name or "—", when(t.created_at), when(t.expires_at), f"{t.uses}/{t.max_uses}",
                "yes" if t.has_repo else "—", ", ".join(t.initial_paths) or "—"]

    @work(exclusive=True, group="tokens-load")
    async def load(self) -> None:
        try:
            tokens = await self.client.enrollment_tokens()
        except ApiError as exc:
            self.report(exc, "Cannot list enrollment tokens")
            return
        self.tokens = {t.id: t for t in tokens}
        self.loaded = True
        self.table.empty = "no enrollment tokens: press n to create one"
        self.show([t.id for t in sorted(tokens, key=lambda t: t.created_at, reverse=True)])

    def action_reload(self) -> None:
        self.load()

    def action_new(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.push_form(EnrollmentForm(values, error), self.create)

    @work(group="tokens-save")
    async def create(self, body: dict[str, Any]) -> None:
        try:
            created = await self.client.create_enrollment_token(body)
        except ApiError as exc:
            self.report(exc, "Cannot create the token")
            if exc.status == 400:
                self.action_new(body, exc.message)
            return
        self.load()
        self.app.push_screen(SecretDialog(created))

    def action_delete(self) -> None:
        key = self.table.cursor_key
        if key is None:
            self.notify("No token selected", severity="warning")
            return
        name = self.tokens[key].name or key

        def answered(yes: bool | None) -> None:
            if yes:
                self.revoke(key)

        self.app.push_screen(ConfirmDialog(f"Revoke enrollment token {name}? Hosts not yet enrolled with it "
                                           "cannot use it any more.", yes="Revoke"), answered)

    @work(group="tokens-save")
    async def revoke(self, token_id: str) -> None:
        try:
            await self.client.delete_enrollment_token(token_id)
        except ApiError as exc:
            self.report(exc, "Cannot revoke")
            return
        self.notify("token revoked")
        self.load()


class AuditScreen(TableScreen):
    """Newest first, a page at a time: `]` older, `[` newer. The newest page follows
    `audit.appended` live; the cursor stays on its entry as new ones arrive above it."""

    CSS_PATH = "admin.tcss"
    TABLE_ID = "audit"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("right_square_bracket", "older", "Older", key_display="]"),
        Binding("left_square_bracket", "newer", "Newer", key_display="["),
        Binding("ctrl+r", "reload", "Newest"),
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


class OperatorsScreen(TableScreen):
    CSS_PATH = "admin.tcss"
    TABLE_ID = "operators"
    MUTATING = frozenset({"new", "edit", "delete"})
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("n", "new", "New operator"),
        Binding("e", "edit", "Edit"),
        Binding("ctrl+d", "delete", "Delete"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.operators: dict[str, Operator] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Operators sign in to the console and the API. viewer reads; operator also acts; "
                     "admin also manages operators and server settings.", classes="screen-hint")
        yield ResourceTable(OPERATOR_COLUMNS, self.cells, id="operators", empty="loading operators…")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Operators"
        self.load()

    def cells(self, operator_id: str) -> list[Text | str]:
        o = self.operators[operator_id]
        state = Text("disabled", style="red") if o.disabled else Text("active", style="green")
        return [o.username, o.role.value, state, when(o.created_at)]

    @work(exclusive=True, group="operators-load")
    async def load(self) -> None:
        try:
            ops = await self.client.operators()
        except ApiError as exc:
            self.report(exc, "Cannot list operators")
            return
        self.operators = {o.id: o for o in ops}
        self.loaded = True
        self.show([o.id for o in sorted(ops, key=lambda o: o.username)])

    def action_reload(self) -> None:
        self.load()

    @on(ResourceTable.Selected, "#operators")
    def selected(self) -> None:
        if not self.readonly:
            self.action_edit()

    def action_new(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.push_form(OperatorForm(values, error), lambda body: self.save(body, None))

    def action_edit(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        key = self.table.cursor_key
        if key is None:
            self.notify("No operator selected", severity="warning")
            return
        op = self.operators[key]
        current = {"username": op.username, "role": op.role.value, "disabled": op.disabled, **(values or {})}
        self.push_form(OperatorForm(current, error, editing=True), lambda body: self.save(body, key))

    @work(group="operators-save")
    async def save(self, body: dict[str, Any], operator_id: str | None) -> None:
        try:
            if operator_id:
                op = await self.client.update_operator(operator_id, body)
            else:
                op = await self.client.create_operator(body)
        except ApiError as exc:
            self.report(exc, "Cannot save operator")
            if exc.status in (400, 409):
                retry = {k: v for k, v in body.items() if k != "password"}
                if operator_id:
                    self.action_edit(retry, exc.message)
                else:
                    self.action_new(retry, exc.message)
            return
        self.notify(f"operator {op.username} saved")
        self.operators[op.id] = op
        self.show([o.id for o in sorted(self.operators.values(), key=lambda o: o.username)])
        self.table.move_to(op.id)  # the cursor on what was just saved
        self.load()

    def action_delete(self) -> None:
        key = self.table.cursor_key
        if key is None:
            return
        op = self.operators[key]
        if self.client.operator and op.id == self.client.operator.id:
            self.notify("You cannot delete yourself", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(key)

        self.app.push_screen(ConfirmDialog(f"Delete operator {op.username}? Their sessions end."), answered)

    @work(group="operators-save")
    async def delete(self, operator_id: str) -> None:
        try:
            await self.client.delete_operator(operator_id)
        except ApiError as exc:
            self.report(exc, "Cannot delete operator")
            return
        self.notify("operator deleted")
        self.load()
