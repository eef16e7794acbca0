"""Enrollment, audit and operators screens, and the `:` palette that jumps between them."""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from textual.widgets import Input, Static

from rm_tui.screens import audit
from rm_tui.screens.audit import AuditScreen
from rm_tui.screens.enrollment import EnrollmentScreen
from rm_tui.screens.operators import OperatorsScreen
from rm_tui.screens.shown_once import ShownOnceDialog
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.fleet import FleetScreen
from rm_tui.format import ULID
from rm_tui.screens.forms import EnrollmentForm, OperatorForm
from rm_tui.widgets.table import ResourceTable
from tests.conftest import wait_for
from tests.tui.helpers import SIZE, new_app, quick_sign_in, type_text, usable_bindings


async def palette_go(pilot, app, what: str) -> None:
    await pilot.press("colon")
    await wait_for(lambda: isinstance(app.screen, CommandPalette), what="command palette")
    await type_text(pilot, what)
    await wait_for(lambda: app.screen.query_one(CommandList).option_count > 0, what=f"palette hit for {what}")
    await pilot.press("enter")


def palette_titles(app) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


async def test_new_enrollment_token_from_the_fleet_shows_the_install_command_once(server):
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app)
        assert "New enrollment token" in usable_bindings(app)  # n: in the ? panel, not the footer
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, EnrollmentForm), what="token form")
        await type_text(pilot, "web")
        app.screen.query_one("#max_uses", Input).value = "3"
        await pilot.press("ctrl+s")
        await wait_for(lambda: isinstance(app.screen, ShownOnceDialog), what="install command")
        install_command, token = (secret.value for secret in app.screen.secrets)
        command = str(app.screen.query_one("#install-command", Static).render())
        assert token in command and token == str(app.screen.query_one("#token-value", Static).render())
        assert "\n" not in install_command
        status, body = await server.call("GET", "/enrollment-tokens")
        (token,) = body["tokens"]
        assert (token["name"], token["max_uses"]) == ("web", 3) and "token" not in token
        await pilot.press("escape")
        screen = app.screen
        assert isinstance(screen, EnrollmentScreen)
        table = screen.query_one("#tokens", ResourceTable)
        await wait_for(lambda: table.row_count == 1, what="token listed")
        assert app.focused is table, "back from the dialog, the table has focus"
        assert "3" in str(table.cells_for(table.cursor_key)[3])
        await pilot.press("ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="revoke confirm")
        await pilot.press("y")
        await wait_for(lambda: table.row_count == 0, what="revoked")


async def test_audit_pages_older_and_newer(server, monkeypatch):
    monkeypatch.setattr(audit, "AUDIT_PAGE", 2)
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app, "viewer")
        status, body = await server.call("GET", "/audit?limit=1000")
        ids = [e["id"] for e in body["entries"]]
        assert len(ids) >= 4, "the fixture's bootstrap, operators and sign-ins leave entries"
        await palette_go(pilot, app, "audit")
        await wait_for(lambda: isinstance(app.screen, AuditScreen), what="audit screen")
        screen = app.screen
        table = screen.query_one("#audit", ResourceTable)
        assert app.focused is table

        def shown() -> list[int]:
            return [int(k) for k in table.keys]

        await wait_for(lambda: shown() == ids[:2], what="newest page")
        await pilot.press("right_square_bracket")
        await wait_for(lambda: shown() == ids[2:4], what="older page")
        await pilot.press("left_square_bracket")
        await wait_for(lambda: shown() == ids[:2], what="back to newest")


async def test_operators_for_admins_only(server):
    viewer = new_app(server)
    async with viewer.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, viewer, "viewer")
        titles = palette_titles(viewer)
        assert "Audit" in titles and "Operators" not in titles and "Enrollment" not in titles
        assert "New enrollment token" not in usable_bindings(viewer)

    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app, "admin")
        await palette_go(pilot, app, "operators")
        await wait_for(lambda: isinstance(app.screen, OperatorsScreen) and app.screen.loaded, what="operators")
        screen = app.screen
        table = screen.query_one("#operators", ResourceTable)
        assert table.row_count == 3
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, OperatorForm), what="operator form")
        await type_text(pilot, "alice")
        await pilot.press("tab")
        await type_text(pilot, "short")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, OperatorForm), "a short password is refused in the form"
        app.screen.query_one("#password", Input).value = "long enough password"
        await pilot.press("ctrl+s")
        await wait_for(lambda: table.row_count == 4, what="alice listed")
        status, body = await server.call("GET", "/operators")
        alice = next(o for o in body["operators"] if o["username"] == "alice")
        assert alice["role"] == "viewer"

        assert app.focused is table, "back from the form, the table has focus"
        assert table.cursor_key == alice["id"], "the cursor is on the operator just saved"
        await pilot.press("ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await pilot.press("n")
        await pilot.pause()
        status, body = await server.call("GET", "/operators")
        assert len(body["operators"]) == 4, "no means nothing is deleted"

        await palette_go(pilot, app, "fleet")
        await wait_for(lambda: isinstance(app.screen, FleetScreen), what="back at the fleet")


async def test_audit_follows_appends_with_short_ids_and_a_steady_cursor(server):
    """New entries arrive live above the cursor; it stays on its entry. Ids are 8 characters,
    times say how long ago."""
    host_id, _ = await server.enroll("web-1")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app, "admin")
        await palette_go(pilot, app, "audit")
        await wait_for(lambda: isinstance(app.screen, AuditScreen) and app.screen.entries, what="audit screen")
        screen = app.screen
        table = screen.query_one("#audit", ResourceTable)
        assert app.focused is table
        rows = [[str(c) for c in table.cells_for(k)] for k in table.keys]
        assert not any(ULID.search(c) for row in rows for c in row), rows
        assert any(host_id[-8:].lower() in c for row in rows for c in row), "the host's id, as 8 characters"
        assert all(row[1].endswith(" ago") for row in rows), rows
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        on = table.cursor_key
        status, _ = await server.call("PATCH", f"/hosts/{host_id}", json={"hostname": "web-2"})
        assert status == 200
        await wait_for(lambda: any(screen.by_key[k].action == "host.update" for k in table.keys[:1]),
                       what="the new entry on top")
        assert table.cursor_key == on and table.cursor_row == 3, "the cursor stays on its entry"
        await pilot.press("G")
        assert table.cursor_row == table.row_count - 1
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("k")
        assert table.cursor_row == 0
