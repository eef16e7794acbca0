"""What every signed-in screen shares: the client, the write permission, error toasts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.screen import Screen

from rm_tui.client import ApiError


class ApiScreen(Screen[None]):
    # Actions that change something on the server; hidden and refused when read-only.
    MUTATING: frozenset[str] = frozenset()

    @property
    def client(self) -> Any:
        return self.app.client  # type: ignore[attr-defined]

    @property
    def readonly(self) -> bool:
        """--readonly, or signed in as a viewer: either way nothing here may change anything."""
        return not self.app.can_write  # type: ignore[attr-defined]

    def report(self, exc: ApiError, title: str) -> None:
        self.app.report(exc, title)  # type: ignore[attr-defined]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.readonly:
            return False  # hidden from the footer and refused
        return True

    def push_form(self, form: Screen[Any], on_submit: Callable[[Any], None]) -> None:
        """Open `form` over this screen; `on_submit(body)` runs when it is saved, not when cancelled.

        Saving is the caller's worker; when the server refuses the values it opens the form
        again (the same call) with what was typed and the server's message."""
        def done(body: Any) -> None:
            if body is not None:
                on_submit(body)

        self.app.push_screen(form, done)
