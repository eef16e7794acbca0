"""The fleet's filter box: typed into while the table keeps focus, applied as the text changes.

Two things cost a thin link a full repaint each, and a filter keystroke paid both
(bench/tty_bytes.py): moving focus between table and box (Textual redraws the widget that
gains or loses focus and the screen with it) and an `Input.Changed` handled a turn after the
box's echo (the echo, then the rows, or both painted twice when the screen was asked for
both regions). So the box never takes focus: the screen hands it the keys typed while
filtering (`take`), and its value's watcher applies the filter in the same turn as the
echo, so echo, rows and status line leave in one frame, each drawn once."""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.widgets import Input


class FilterBox(Input, can_focus=False):
    def __init__(self, on_change: Callable[[str], None], *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id)
        self.on_change = on_change

    def watch_value(self, value: str) -> None:
        self.on_change(value)

    def take(self, event: events.Key) -> bool:
        """A key typed while filtering: True when it edited the text (the caller stops it)."""
        if event.key == "backspace":
            self.value = self.value[:-1]
        elif event.key == "ctrl+u":
            self.value = ""
        elif event.is_printable and event.character:
            self.value += event.character
        else:
            return False
        self.cursor_position = len(self.value)
        return True

    def paste(self, text: str) -> None:
        self.value += " ".join(text.split())  # one line: a pasted newline is no filter
        self.cursor_position = len(self.value)
