"""Enrollment tokens: a new host joins with one (`n` creates it and shows its install command once)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from rm_core.api import EnrollmentToken
from rm_tui.client import ApiError
from rm_tui.format import plural, when
from rm_tui.screens.base import TableScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import EnrollmentForm
from rm_tui.screens.shown_once import Secret, ShownOnceDialog
from rm_tui.widgets.table import Column, ResourceTable

TOKEN_COLUMNS = [Column("name", "Name", 20), Column("created", "Created", 16), Column("expires", "Expires", 16),
                 Column("uses", "Uses", 7), Column("repo", "Repo", 5), Column("paths", "Initial paths", 0)]


class EnrollmentScreen(TableScreen):
    CSS_PATH = "tables.tcss"
    TABLE_ID = "tokens"
    MUTATING = frozenset({"new", "delete"})
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("n", "new", "New token"),
        Binding("ctrl+d", "delete", "Revoke"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "app.pop_screen", "Back"),
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
        self.app.push_screen(ShownOnceDialog(
            f"Enrollment token {created.name or ''} created",
            [Secret("Run this on the new host (as root):", created.install_command, "install command",
                    id="install-command"),
             Secret("Token (shown only now; the server keeps a hash):", created.token, "token", id="token-value")],
            f"valid until {when(created.expires_at)} · {plural(created.max_uses, 'use')}"))

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
