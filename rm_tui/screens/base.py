"""What every signed-in screen shares: the client, the write permission, error toasts."""

from __future__ import annotations

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
