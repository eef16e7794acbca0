"""The notification channels screen (admins): add a channel, test it against a real
receiver, see a failing one's error, edit and delete it."""

from __future__ import annotations

from textual.widgets import Checkbox, Input, Static

from rm_tui.screens.channels import ChannelForm, ChannelsScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.widgets.table import ResourceTable
from tests.alert_receivers import json_receiver
from tests.conftest import wait_for
from tests.tui.helpers import SIZE, cell, new_app, quick_sign_in, toasts, type_text, usable_bindings
from tests.tui.test_admin import palette_go, palette_titles


async def test_channels_for_admins_only(server):
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app, "operator")
        assert "Channels" not in palette_titles(app)


async def test_add_test_fail_edit_and_delete_a_channel(server):
    app = new_app(server)
    async with json_receiver() as rec, app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app, "admin")
        await palette_go(pilot, app, "channels")
        await wait_for(lambda: isinstance(app.screen, ChannelsScreen) and app.screen.loaded, what="channels")
        screen = app.screen
        table = screen.query_one("#channels", ResourceTable)
        assert table.row_count == 0
        assert {"New channel", "Test", "Delete"} <= set(usable_bindings(app))

        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, ChannelForm), what="channel form")
        form = app.screen
        await type_text(pilot, "ops")
        form.query_one("#url", Input).value = rec.channel_url("console")
        form.query_one("#ev-host-offline", Checkbox).value = True
        await pilot.press("ctrl+s")
        await wait_for(lambda: table.row_count == 1, what="the channel listed")
        status, body = await server.call("GET", "/notification-channels")
        (made,) = body["channels"]
        assert made["events"] == ["backup.failed", "host.offline"] and made["min_interval_s"] == 300
        assert cell(table, made["id"], "url").startswith("json://127.0.0.1:") and "console" not in cell(
            table, made["id"], "url")  # the path is part of the secret
        assert cell(table, made["id"], "state") == "never sent"

        await pilot.press("t")
        await wait_for(lambda: rec.received, what="the test message at the receiver")
        await wait_for(lambda: cell(table, made["id"], "state") == "ok", what="state ok")

        rec.statuses = [500]
        await pilot.press("t")
        await wait_for(lambda: cell(table, made["id"], "state") == "failing ×1", what="failing state")
        assert "500" in cell(table, made["id"], "error")
        detail = str(screen.query_one("#channel-detail", Static).render())
        assert "last error" in detail and "500" in detail, detail  # in full, where the cell cuts it
        assert any("did not go through" in t for t in toasts(app, "error", titles=True)), toasts(app)

        await pilot.press("e")
        await wait_for(lambda: isinstance(app.screen, ChannelForm), what="edit form")
        form = app.screen
        assert form.query_one("#url", Input).value == "", "the saved URL is never shown again"
        form.query_one("#url", Input).value = rec.channel_url("other")
        form.query_one("#name", Input).value = "ops mail"
        await pilot.press("ctrl+s")
        await wait_for(lambda: cell(table, made["id"], "name") == "ops mail", what="renamed")

        await pilot.press("ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await pilot.press("y")
        await wait_for(lambda: table.row_count == 0, what="deleted")
        status, body = await server.call("GET", "/notification-channels")
        assert body["channels"] == []
