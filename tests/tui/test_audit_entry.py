"""The audit screen shows an entry's Details in full: under the table for the row under the
cursor, and `enter` opens the whole entry (ids in full, one detail per line)."""

from __future__ import annotations

from textual.widgets import Static

from rm_tui.screens.audit import AuditEntryScreen, AuditScreen
from tests.conftest import wait_for
from tests.tui.helpers import SIZE, make_group, new_app, quick_sign_in, shown_bindings
from tests.tui.test_admin import palette_go

LONG = "nightly-" + "-".join(f"part{i:02d}" for i in range(14))  # ~100 characters: cut in any column


def rendered(screen, selector: str) -> str:
    return " ".join(str(screen.query_one(selector, Static).render()).split())


async def test_details_in_full_under_the_table_and_enter_opens_the_entry(server):
    host_id, _ = await server.enroll("web-1")
    group = await make_group(server, host_id, LONG)
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app, "admin")
        await palette_go(pilot, app, "audit")
        await wait_for(lambda: isinstance(app.screen, AuditScreen) and app.screen.entries, what="audit screen")
        screen = app.screen
        table = screen.table
        key = next(k for k in table.keys if screen.by_key[k].action == "source_group.create")
        assert LONG not in " ".join(str(c) for c in table.cells_for(key))[:120], "cut in the table at 120 columns"
        table.move_to(key)
        await pilot.pause()
        below = rendered(screen, "#audit-detail")
        assert LONG in below and "source_group.create" in below, below
        assert "enter" in below

        assert "Open" in shown_bindings(app)
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, AuditEntryScreen), what="the entry in full")
        entry = rendered(app.screen, "#audit-entry")
        for whole in (LONG, group["id"], host_id, "source_group.create", "user:operator"):
            assert whole in entry, (whole, entry)
        await pilot.press("escape")
        await wait_for(lambda: app.screen is screen, what="back on the audit")
        assert table.cursor_key == key and app.focused is table
