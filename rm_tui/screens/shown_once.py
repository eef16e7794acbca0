"""A secret shown this once (the server keeps only a hash, or only what the agent needs): an
enrollment token with its install command, a generated repository password, an htpasswd line.
Each value can be copied to the terminal's clipboard (OSC 52) with the key its label names."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

COPY_KEYS = ("c", "t")  # the first value, the second


class Secret(NamedTuple):
    label: str
    value: str
    name: str  # what the copy toast calls it: "install command", "token", "password"
    id: str | None = None


class ShownOnceDialog(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
        *(Binding(key, f"copy({i})", f"Copy value {i + 1} (OSC 52)", show=False) for i, key in enumerate(COPY_KEYS)),
    ]

    def __init__(self, title: str, secrets: list[Secret], note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.secrets = secrets[:len(COPY_KEYS)]
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="secret-box", classes="dialog"):
            yield Label(self.title_text, classes="form-title")
            for key, secret in zip(COPY_KEYS, self.secrets):
                yield Label(f"{secret.label}  [dim]({key} copies it)[/]")
                yield Static(Text(secret.value), id=secret.id, classes="secret-value")
            if self.note:
                yield Label(self.note, classes="form-hint")
            yield Label("Store it now: it is not shown again.", classes="form-hint")
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "copy" and parameters and int(str(parameters[0])) >= len(self.secrets):
            return False
        return True

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self, index: int) -> None:
        secret = self.secrets[index]
        self.app.copy_to_clipboard(secret.value)
        self.notify(f"{secret.name} copied to the clipboard", timeout=3)
