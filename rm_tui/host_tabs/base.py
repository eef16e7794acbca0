"""What every host tab shares: the host (an attribute the screen sets), the server (ApiAccess,
as screens have it), and the server events the screen hands down (`apply`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widget import Widget

from rm_core.api import Host
from rm_core.enums import HostStatus
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.screens.base import ApiAccess
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.widgets.table import ResourceTable

W = TypeVar("W", bound=Widget)


class HostTab(Widget, ApiAccess):
    """One tab's content. Subclasses load their own data (`load`, a worker), follow the events
    the screen hands down (`apply`) and post what other tabs show of it (messages.py)."""

    DEFAULT_CSS = "HostTab { height: 1fr; }"

    # Set by the host screen (attributes down); a tab that shows it redraws in watch_host.
    host: reactive[Host] = reactive(Host.model_construct(id="", hostname="", status=HostStatus.pending), init=False,
                                    always_update=True)

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(HostTab.host, host)
        self.loaded = False  # the first load finished (the screen's `loaded` waits on every tab)

    def load(self) -> object:
        """Read this tab's data from the server (a worker in subclasses, which returns it)."""
        self.loaded = True
        return None

    def apply(self, event: m.ServerEvent) -> None:
        """A server event about this host, or the stream itself: follow it, never poll."""
        if isinstance(event, m.EventsConnected) and self.loaded:
            self.load()  # whatever changed while the stream was down

    @property
    def table(self) -> ResourceTable | None:
        tables = self.query(ResourceTable)
        return tables.first() if tables else None

    def part(self, selector: str, expect_type: type[W]) -> W | None:
        """One of this tab's own widgets, or None while the tab is being taken down.

        What redraws a tab runs when a load, a timer or an event ends, and that can be while
        its screen is being closed: Textual removes a tab's children before the tab, so the tab
        is still mounted but its parts are gone, and query_one's NoMatches in a worker ended
        the whole console (seen: a history load finishing as a test's app shut down). A tab's
        table is `table`, which is None then too."""
        if not self.is_mounted:
            return None
        try:
            return self.query_one(selector, expect_type)
        except NoMatches:
            return None

    def focus_target(self) -> Widget:
        """Where focus goes when the tab comes to the front: its table, else the tab itself."""
        return self.table or self

    def selected(self) -> str | None:
        """The key of the row under the cursor (None: no table, or an empty one)."""
        table = self.table
        return table.cursor_key if table is not None else None

    def ask(self, question: str, then: Callable[[], object], yes: str = "Delete") -> None:
        """A yes/no dialog (No focused); `then()` runs only on an explicit yes."""
        def answered(ok: bool | None) -> None:
            if ok:
                then()

        self.app.push_screen(ConfirmDialog(question, yes=yes), answered)

    def refused(self, exc: ApiError, title: str) -> bool:
        """Toast the server's message; True when the values were refused (form worth reopening)."""
        self.report(exc, title)
        return exc.status in (400, 409, 422)
