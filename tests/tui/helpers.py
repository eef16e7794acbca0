"""Pilot helpers shared by the rm-tui tests."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable

from rm_tui.app import RmTui
from rm_tui.screens.fleet import FleetScreen
from rm_tui.screens.host import HostScreen
from rm_tui.screens.login import LoginScreen
from rm_tui.widgets.table import ResourceTable
from tests.conftest import ADMIN_PASSWORD, wait_for

SIZE = (120, 40)


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*("space" if ch == " " else ch for ch in text))


async def sign_in(pilot: Pilot, app: RmTui, username: str = "operator", password: str = ADMIN_PASSWORD) -> None:
    """Through the login screen as a person would: type, Tab, type, Enter."""
    await wait_for(lambda: isinstance(app.screen, LoginScreen), what="login screen")
    await pilot.pause()
    assert app.focused is not None and app.focused.id == "username"
    await type_text(pilot, username)
    await pilot.press("tab")
    assert app.focused.id == "password"
    await type_text(pilot, password)
    await pilot.press("enter")


async def fleet_ready(pilot: Pilot, app: RmTui) -> FleetScreen:
    """Signed in, the events stream is up and the host list is loaded and settled."""
    await wait_for(lambda: isinstance(app.screen, FleetScreen), what="fleet screen")
    fleet = app.screen
    assert isinstance(fleet, FleetScreen)
    await wait_for(lambda: app.events_connected, what="events stream")
    await pilot.pause()
    await wait_for(lambda: fleet.loads >= 1 and not running(app, "fleet-load"),
                   what="host list loaded")
    return fleet


def running(app: RmTui, group: str) -> list:
    return [w for w in app.workers if w.group == group and w.is_running]


def cell(table: DataTable | ResourceTable, row: str, column: str) -> str:
    """A cell's text as the table would draw it now."""
    if isinstance(table, ResourceTable):
        return str(table.cells_for(row)[[c.key for c in table.columns].index(column)])
    return str(table.get_cell(row, column))


async def open_host(pilot: Pilot, app: RmTui, fleet: FleetScreen, host_id: str) -> HostScreen:
    fleet.table.move_to(host_id)
    await pilot.press("enter")
    await wait_for(lambda: isinstance(app.screen, HostScreen), what="host screen")
    screen = app.screen
    assert isinstance(screen, HostScreen)
    await wait_for(lambda: screen.loaded, what="host loaded")
    return screen


async def make_group(server, host_id: str, name: str = "etc") -> dict:
    status, group = await server.call("POST", f"/hosts/{host_id}/source-groups", role="operator",
                                      json={"name": name, "includes": ["/etc"]})
    assert status == 201, group
    return group


async def jobs_of(server, host_id: str) -> list[dict]:
    status, body = await server.call("GET", f"/jobs?host_id={host_id}")
    assert status == 200, body
    return body["jobs"]




def shown_bindings(app: RmTui) -> list[str]:
    """Descriptions of the bindings the footer shows right now."""
    return [b.binding.description for b in app.screen.active_bindings.values() if b.binding.show and b.enabled]


def record_toasts(app: RmTui) -> RmTui:
    """Keep every notification the app shows (App.notify is public; its list of them is not)."""
    shown: list[tuple[str, str, str]] = []
    notify = app.notify

    def recording(message, *, title="", severity="information", **kw):
        shown.append((str(message), str(title), severity))
        return notify(message, title=title, severity=severity, **kw)

    app.notify = recording  # type: ignore[method-assign]
    app.shown_toasts = shown  # type: ignore[attr-defined]
    return app


def usable_bindings(app: RmTui) -> list[str]:
    """Descriptions of every binding that works right now, in the footer or only in the `?` panel."""
    return [b.binding.description for b in app.screen.active_bindings.values() if b.enabled]


def toasts(app: RmTui, severity: str | None = None, titles: bool = False) -> list[str]:
    return [title if titles else message for message, title, sev in app.shown_toasts  # type: ignore[attr-defined]
            if severity is None or sev == severity]


def new_app(server, readonly: bool = False) -> RmTui:
    """The app as the CLI builds it, without animations (tab underlines would cost every test time)."""
    from rm_tui.app import make_app

    app = make_app(server.url, readonly=readonly)
    app.animation_level = "none"
    return record_toasts(app)


async def quick_sign_in(pilot: Pilot, app: RmTui, username: str = "operator") -> FleetScreen:
    """Sign in without typing key by key (test_tui covers typing) and wait for the fleet."""
    from textual.widgets import Input

    await wait_for(lambda: isinstance(app.screen, LoginScreen), what="login screen")
    await pilot.pause()
    app.screen.query_one("#username", Input).value = username
    app.screen.query_one("#password", Input).value = ADMIN_PASSWORD
    await pilot.press("enter")
    return await fleet_ready(pilot, app)


async def signed_in_at_host(pilot: Pilot, app: RmTui, host_id: str, username: str = "operator") -> HostScreen:
    await quick_sign_in(pilot, app, username)
    return await open_host(pilot, app, app.screen, host_id)
