"""What every form shares: title, fields, an inline error line, Save/Cancel, `esc` that asks
before throwing edits away, and keys typed in a burst that land in the right fields."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, SelectionList, Static, TextArea

from rm_tui.messages import ScreenReady
from rm_tui.screens.confirm import ConfirmDialog


class FormError(Exception):
    """A value the form refuses; `field` is the id of the widget to focus."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class FormScreen(ModalScreen[dict[str, Any] | None]):
    """Title, fields, an inline error line and Save/Cancel. Subclasses fill in the middle.

    Keys typed while the form opens wait for it (RmTui.on_event holds them until `ready`), and
    its first field has focus before any is handled: "n", a name, Tab, a path, typed in one
    burst, land in the name and the path."""

    CSS_PATH = "dialogs.tcss"
    AUTO_FOCUS = ".form-body *"  # also when the form comes back from a dialog over it
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
        # A plain tab binding runs only after the key has gone to the focused field and bubbled
        # back, behind the keys after it, which the old field then took. Priority bindings run
        # when the key arrives (the sign-in screen does the same).
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]
    title_text = "Form"
    ready = False  # mounted with its first field focused: held keys may come (RmTui.on_event)

    def __init__(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        super().__init__()
        self.values = values or {}
        self.error = error
        self.initial: dict[str, object] = {}  # the fields as opened: esc asks only after a change

    def on_mount(self) -> None:
        # Runs after the subclass's on_mount (Textual calls each class's, the subclass's first).
        fields = [w for w in self.query(".form-body *") if w.focusable]
        if fields and self.focused is None:
            self.set_focus(fields[0])  # now: focus() would wait behind the keys already queued
        self.initial = self.field_values()
        self.ready = True
        self.app.post_message(ScreenReady())

    def field_values(self) -> dict[str, object]:
        """Every field's value by id: what `esc` compares with the form as it opened."""
        values: dict[str, object] = {}
        for widget in self.query(".form-body *"):
            if widget.id is None:
                continue
            if isinstance(widget, (Input, Checkbox, Select)):
                values[widget.id] = widget.value
            elif isinstance(widget, TextArea):
                values[widget.id] = widget.text
            elif isinstance(widget, SelectionList):
                values[widget.id] = tuple(widget.selected)
        return values

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="form-title")
            with VerticalScroll(classes="form-body"):
                yield from self.fields()
            yield Static(self.error or "", id="form-error", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save (ctrl+s)", variant="primary", id="save")
        yield Footer()

    def fields(self) -> ComposeResult:
        yield from ()

    def collect(self) -> dict[str, Any]:
        """The request body; raise FormError for anything that cannot be sent."""
        return {}

    def show_error(self, message: str) -> None:
        self.query_one("#form-error", Static).update(message)

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    def action_save(self) -> None:
        try:
            body = self.collect()
        except FormError as exc:
            self.refuse(exc)
            return
        self.dismiss(body)

    def refuse(self, exc: FormError) -> None:
        self.show_error(exc.message)
        widgets = self.query(f"#{exc.field}")
        if widgets:
            widgets.first().focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without saving; after an edit, only once the operator says so."""
        if self.field_values() == self.initial:
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)

        self.app.push_screen(ConfirmDialog(f"Discard your changes ({self.title_text})?", yes="Discard",
                                           no="Keep editing"), answered)

    # helpers
    def text(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value.strip()

    def lines(self, field: str) -> list[str]:
        return [ln.strip() for ln in self.query_one(f"#{field}", TextArea).text.splitlines() if ln.strip()]

    def number(self, field: str, label: str, minimum: int = 0) -> int | None:
        raw = self.text(field)
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise FormError(field, f"{label}: {raw!r} is not a whole number") from None
        if value < minimum:
            raise FormError(field, f"{label} must be at least {minimum}")
        return value

    def switch(self, field: str) -> bool:
        return self.query_one(f"#{field}", Checkbox).value


def field_label(text: str) -> Label:
    return Label(text, classes="field-label")


def num(value: Any) -> str:
    return "" if value is None else str(value)
