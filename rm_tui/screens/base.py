"""What every signed-in screen (and host tab) shares: the client, the write permission, error toasts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel
from textual.dom import DOMNode
from textual.screen import Screen

from rm_tui.client import ApiError, Client
from rm_tui.format import query_problem
from rm_tui.widgets.table import ResourceTable

M = TypeVar("M", bound=BaseModel)


@runtime_checkable
class Console(Protocol):
    """What screens and host tabs use of the app (`RmTui` in rm_tui/app.py). A protocol, so
    they need not import the module that imports them."""

    client: Client

    @property
    def can_write(self) -> bool: ...

    def report(self, exc: ApiError, title: str) -> None: ...

    def use_server(self, url: str) -> None: ...


def console(node: DOMNode) -> Console:
    """The running console app, typed (`node.app` is typed as any Textual app)."""
    app = node.app
    if not isinstance(app, Console):
        raise TypeError(f"{type(app).__name__} is not the rm-tui console app")
    return app


class ApiAccess(DOMNode):
    """The server as screens and host tabs reach it: the app's client, the write permission,
    error toasts and forms. Stateless: everything is read from the app. Listed after the
    Textual base (`class X(Screen, ApiAccess)`): Textual takes a class's CSS from its first base."""

    # Actions that change something on the server; hidden and refused when read-only.
    MUTATING: frozenset[str] = frozenset()

    @property
    def client(self) -> Client:
        return console(self).client

    @property
    def readonly(self) -> bool:
        """--readonly, or signed in as a viewer: either way nothing here may change anything."""
        return not console(self).can_write

    def report(self, exc: ApiError, title: str) -> None:
        console(self).report(exc, title)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.readonly:
            return False  # hidden from the footer and refused
        return True

    def push_form(self, form: Screen[Any], on_submit: Callable[[Any], object]) -> None:
        """Open `form` over this screen; `on_submit(body)` runs when it is saved, not when cancelled.

        Saving is the caller's worker; when the server refuses the values it opens the form
        again (the same call) with what was typed and the server's message."""
        def done(body: Any) -> None:
            if body is not None:
                on_submit(body)

        self.app.push_screen(form, done)


class ApiScreen(Screen[None], ApiAccess):
    """A signed-in screen: the app posts it the server's events (messages.ServerEvent)."""


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


async def ask_agent(screen: Any, call: Awaitable[Any], model: type[M], what: str) -> M | None:
    """The answer of a live query to a host's agent (diff, retention preview), or None once the
    screen has said why not: a dead session goes back to sign in; a refusal (host offline,
    agent too old, timeout) and an answer this console cannot read go to the screen's
    `show_problem` in words, naming the host by its name, never as a traceback."""
    try:
        return model.model_validate(await call)
    except ApiError as exc:
        if exc.status == 401:
            screen.app.report(exc, what)
        else:
            screen.show_problem(query_problem(exc.code, exc.status, exc.message, screen.hostname, screen.host_id))
    except ValueError as exc:
        screen.show_problem(f"the server's {what} could not be read: {exc}")
    return None
