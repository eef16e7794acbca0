"""Operator accounts (admins only): who may sign in, and with which role."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from rm_core.api import Operator
from rm_tui.client import ApiError
from rm_tui.format import when
from rm_tui.screens.base import TableScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import OperatorForm
from rm_tui.widgets.table import Column, ResourceTable

OPERATOR_COLUMNS = [Column("username", "Username", 24), Column("role", "Role", 10), Column("state", "State", 10),
                    Column("created", "Created", 0)]


class OperatorsScreen(TableScreen):
    CSS_PATH = "tables.tcss"
    TABLE_ID = "operators"
    MUTATING = frozenset({"new", "edit", "delete"})
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("n", "new", "New operator"),
        Binding("e", "edit", "Edit"),
        Binding("enter", "edit", "Edit", show=False),
        Binding("ctrl+d", "delete", "Delete"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "app.pop_screen", "Back"),
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
