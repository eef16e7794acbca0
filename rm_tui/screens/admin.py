"""Enrollment tokens, the audit log and operator accounts."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Label, Static

from rm_core.api import AuditEntry, EnrollmentToken, EnrollmentTokenCreated, Operator
from rm_tui.client import ApiError
from rm_tui.format import plural, short_ids, when
from rm_tui.screens.base import ApiScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import EnrollmentForm, OperatorForm

AUDIT_PAGE = 100


def selected_key(table: DataTable) -> str | None:
    if table.row_count == 0:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


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


class EnrollmentScreen(ApiScreen):
    CSS_PATH = "admin.tcss"
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
        self.tokens: list[EnrollmentToken] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Enrollment tokens let a new host join: create one, run its install command on the host.",
                     classes="screen-hint")
        table: DataTable[str] = DataTable(id="tokens", cursor_type="row", zebra_stripes=True)
        for key, label in (("name", "Name"), ("created", "Created"), ("expires", "Expires"), ("uses", "Uses"),
                           ("paths", "Initial paths"), ("repo", "Repo")):
            table.add_column(label, key=key)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Enrollment"
        self.query_one("#tokens", DataTable).focus()
        self.load()
        if self.open_form and not self.readonly:
            self.action_new()

    @work(exclusive=True, group="tokens-load")
    async def load(self) -> None:
        try:
            self.tokens = await self.client.enrollment_tokens()
        except ApiError as exc:
            self.report(exc, "Cannot list enrollment tokens")
            return
        self.loaded = True
        table = self.query_one("#tokens", DataTable)
        table.clear()
        for t in sorted(self.tokens, key=lambda t: t.created_at, reverse=True):
            table.add_row(t.name or "—", when(t.created_at), when(t.expires_at), f"{t.uses}/{t.max_uses}",
                          ", ".join(t.initial_paths) or "—", "yes" if t.has_repo else "—", key=t.id)

    def action_reload(self) -> None:
        self.load()

    def action_new(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        def done(body: dict[str, Any] | None) -> None:
            if body is not None:
                self.create(body)

        self.app.push_screen(EnrollmentForm(values, error), done)

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
        key = selected_key(self.query_one("#tokens", DataTable))
        if key is None:
            self.notify("No token selected", severity="warning")
            return
        name = next((t.name for t in self.tokens if t.id == key), None) or key

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


class AuditScreen(ApiScreen):
    """Newest first, a page at a time: `]` older, `[` newer."""

    CSS_PATH = "admin.tcss"
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

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="audit-status", classes="screen-hint")
        table: DataTable[str] = DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        for key, label in (("id", "#"), ("ts", "When"), ("actor", "Who"), ("action", "Action"),
                           ("target", "Target"), ("details", "Details")):
            table.add_column(label, key=key)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Audit"
        self.query_one("#audit", DataTable).focus()
        self.load()

    @work(exclusive=True, group="audit-load")
    async def load(self) -> None:
        try:
            entries = await self.client.audit(self.page_size, self.cursors[-1])
        except ApiError as exc:
            self.report(exc, "Cannot read the audit log")
            return
        if not entries and len(self.cursors) > 1:
            self.cursors.pop()
            self.notify("no older entries", timeout=2)
            return
        self.entries = entries
        table = self.query_one("#audit", DataTable)
        table.clear()
        for e in entries:
            who = e.actor_name or e.actor_id or e.actor_kind
            details = ", ".join(f"{k}={v}" for k, v in e.details.items())
            table.add_row(str(e.id), when(e.ts), f"{e.actor_kind}:{short_ids(who)}", e.action,
                          short_ids(e.target or "—"), short_ids(details)[:120], key=str(e.id))
        page = len(self.cursors)
        span = f"#{entries[0].id}–#{entries[-1].id}" if entries else "empty"
        self.query_one("#audit-status", Static).update(
            f"page {page} ({span}, newest first)  ·  ] older  ·  [ newer")

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
        self.load()


class OperatorsScreen(ApiScreen):
    CSS_PATH = "admin.tcss"
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
        table: DataTable[Text | str] = DataTable(id="operators", cursor_type="row", zebra_stripes=True)
        for key, label in (("username", "Username"), ("role", "Role"), ("state", "State"), ("created", "Created")):
            table.add_column(label, key=key)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Operators"
        self.query_one("#operators", DataTable).focus()
        self.load()

    @work(exclusive=True, group="operators-load")
    async def load(self) -> None:
        try:
            ops = await self.client.operators()
        except ApiError as exc:
            self.report(exc, "Cannot list operators")
            return
        self.operators = {o.id: o for o in ops}
        self.loaded = True
        table = self.query_one("#operators", DataTable)
        selected = selected_key(table)
        table.clear()
        for o in sorted(ops, key=lambda o: o.username):
            state = Text("disabled", style="red") if o.disabled else Text("active", style="green")
            table.add_row(o.username, o.role.value, state, when(o.created_at), key=o.id)
        if selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))

    def action_reload(self) -> None:
        self.load()

    def action_new(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        def done(body: dict[str, Any] | None) -> None:
            if body is not None:
                self.save(body, None)

        self.app.push_screen(OperatorForm(values, error), done)

    def action_edit(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        key = selected_key(self.query_one("#operators", DataTable))
        if key is None:
            self.notify("No operator selected", severity="warning")
            return
        op = self.operators[key]
        current = {"username": op.username, "role": op.role.value, "disabled": op.disabled, **(values or {})}

        def done(body: dict[str, Any] | None) -> None:
            if body is not None:
                self.save(body, key)

        self.app.push_screen(OperatorForm(current, error, editing=True), done)

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
        self.load()

    def action_delete(self) -> None:
        key = selected_key(self.query_one("#operators", DataTable))
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
