"""Host detail tabs and editing source groups, schedules, maintenance and bandwidth."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from textual import events
from textual.widgets import Input, SelectionList, Static

from rm_core import protocol as p
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import MaintenanceForm, ScheduleForm, SourceGroupForm
from rm_tui.screens.snapshot_browser import SnapshotBrowser
from rm_tui.widgets.table import ResourceTable
from tests.conftest import TestAgent, wait_for
from tests.tui.helpers import SIZE, cell, make_group, new_app, shown_bindings, signed_in_at_host, toasts, type_text

REPO_PASSWORD = "hunter2-never-shown"


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_tabs_show_snapshots_maintenance_and_settings_without_secrets(server):
    host_id, agent_token = await server.enroll("web-1")
    await make_group(server, host_id)
    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                  json={"url": f"rest:https://backup:{REPO_PASSWORD}@repo.example/web-1",
                                        "password": REPO_PASSWORD})
    assert status == 200
    status, _ = await server.call("PUT", f"/hosts/{host_id}/bandwidth", role="operator", json={"upload_kbps": 512})
    assert status == 200
    status, _ = await server.call("PUT", f"/hosts/{host_id}/maintenance", role="operator",
                                  json={"forget": {"cron": "0 3 * * *", "enabled": True}})
    assert status == 200
    agent = TestAgent(server, agent_token)
    await agent.connect()
    snap = {"id": "ab" * 32, "short_id": "abababab", "time": datetime.now(timezone.utc), "paths": ["/etc"],
            "tags": ["etc"]}
    await agent.send(p.SnapshotsReport(snapshots=[p.SnapshotInfo(**snap)]))
    await wait_for(lambda: _snapshot_count(server, host_id), what="snapshot stored")

    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await wait_for(lambda: host.settings_loaded, what="settings loaded")
        await pilot.press("5")
        snaps = host.query_one("#snapshots-table", ResourceTable)
        assert app.focused is snaps and snaps.row_count == 1
        assert cell(snaps, "ab" * 32, "id") == "abababab"
        await pilot.press("6")
        maintenance = text_of(host, "#maintenance-text")
        assert "forget" in maintenance and "0 3 * * *" in maintenance
        assert "Edit" in shown_bindings(app) and "New" not in shown_bindings(app)
        await pilot.press("7")
        settings = text_of(host, "#settings-text")
        assert "upload 512 KiB/s" in settings and "repo.example" in settings
        assert REPO_PASSWORD not in settings and REPO_PASSWORD not in text_of(host, "#overview-more")
    await agent.close()


async def _snapshot_count(server, host_id: str, at_least: int = 1) -> bool:
    status, body = await server.call("GET", f"/hosts/{host_id}/snapshots")
    return status == 200 and len(body["snapshots"]) >= at_least


async def schedules_of(server, host_id: str) -> list[dict]:
    status, body = await server.call("GET", f"/hosts/{host_id}/schedules")
    assert status == 200, body
    return body["schedules"]


async def test_schedule_form_refuses_bad_cron_then_creates_with_preview(server):
    host_id, _ = await server.enroll("web-1")
    group = await make_group(server, host_id)
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await pilot.press("3")
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, ScheduleForm), what="schedule form")
        form = app.screen
        await type_text(pilot, "nightly")
        cron = form.query_one("#cron", Input)
        cron.focus()
        cron.value = ""
        await type_text(pilot, "61 * * * *")
        await pilot.pause()
        assert "invalid" in form.preview_text and form.query_one("#cron-preview").has_class("error")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form, "a bad cron keeps the form open"
        assert "61 * * * *" in text_of(form, "#form-error")
        assert await schedules_of(server, host_id) == []

        cron.value = ""
        await type_text(pilot, "30 2 * * *")
        await pilot.pause()
        assert form.preview_text.count("02:30") == 5, form.preview_text
        assert list(form.query_one("#groups", SelectionList).selected) == [group["id"]], "the only group is chosen"
        await pilot.press("ctrl+s")
        await wait_for(lambda: app.screen is host, what="form closed")
        created = await wait_for(lambda: schedules_of(server, host_id), what="schedule created")
        assert (created[0]["name"], created[0]["cron"], created[0]["source_group_ids"]) == \
            ("nightly", "30 2 * * *", [group["id"]])
        table = host.query_one("#schedules-table", ResourceTable)
        await wait_for(lambda: created[0]["id"] in table.index, what="schedule row")
        assert app.focused is table and table.cursor_key == created[0]["id"], "focus and cursor on the new row"


async def test_source_group_new_edit_and_delete_asks_first(server):
    host_id, _ = await server.enroll("web-1")
    app = new_app(server)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await pilot.press("2")
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, SourceGroupForm), what="group form")
        await type_text(pilot, "home")
        await pilot.press("tab")
        await type_text(pilot, "/home")
        app.screen.query_one("#keep_daily", Input).value = "7"
        await pilot.press("ctrl+s")
        table = host.query_one("#groups-table", ResourceTable)
        await wait_for(lambda: table.row_count == 1, what="group row")
        status, body = await server.call("GET", f"/hosts/{host_id}/source-groups")
        (group,) = body["source_groups"]
        assert group["includes"] == ["/home"] and group["retention"]["keep_daily"] == 7

        # Edit keeps what the form does not show, changes what it does.
        await pilot.press("e")
        await wait_for(lambda: isinstance(app.screen, SourceGroupForm), what="edit form")
        assert app.screen.query_one("#name", Input).value == "home"
        app.screen.query_one("#keep_daily", Input).value = "14"
        await pilot.press("ctrl+s")
        await wait_for(lambda: host.pane("groups").groups[group["id"]].retention.keep_daily == 14, what="edited")

        # A schedule uses it: the server's 409 names the schedule, nothing is deleted.
        status, sched = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                          json={"name": "nightly", "cron": "0 2 * * *",
                                                "source_group_ids": [group["id"]]})
        assert status == 201, sched
        await pilot.press("ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm dialog")
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is host and table.row_count == 1
        await pilot.press("ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm dialog")
        await pilot.press("y")
        await wait_for(lambda: any("nightly" in t for t in toasts(app, "error")), what="409 toast")
        status, body = await server.call("GET", f"/hosts/{host_id}/source-groups")
        assert len(body["source_groups"]) == 1

        # Schedule gone: now the delete goes through.
        await server.call("DELETE", f"/hosts/{host_id}/schedules/{sched['id']}", role="operator")
        await pilot.press("ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm dialog")
        await pilot.press("y")
        await wait_for(lambda: table.row_count == 0, what="row gone")
        status, body = await server.call("GET", f"/hosts/{host_id}/source-groups")
        assert body["source_groups"] == []


async def test_server_400_reopens_the_form_with_its_message(server):
    host_id, _ = await server.enroll("web-1")
    app = new_app(server)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await pilot.press("6")
        await pilot.press("e")
        await wait_for(lambda: isinstance(app.screen, MaintenanceForm), what="maintenance form")
        app.screen.query_one("#check-subset", Input).value = "lots"
        await pilot.press("ctrl+s")
        await wait_for(lambda: toasts(app, "error"), what="error toast")
        await wait_for(lambda: isinstance(app.screen, MaintenanceForm), what="form again")
        assert "read_data_subset" in text_of(app.screen, "#form-error")
        assert app.screen.query_one("#check-subset", Input).value == "lots", "the typed value survives"
        await pilot.press("escape")
        assert app.screen is host


async def test_readonly_and_viewer_hide_editing(server):
    host_id, _ = await server.enroll("web-1")
    await make_group(server, host_id)
    for app, user in ((new_app(server, readonly=True), "operator"), (new_app(server), "viewer")):
        async with app.run_test(size=SIZE) as pilot:
            host = await signed_in_at_host(pilot, app, host_id, username=user)
            for tab in "2367":
                await pilot.press(tab)
                shown = shown_bindings(app)
                assert not {"New", "Edit", "Delete", "Run now"} & set(shown), (tab, shown)
            await pilot.press("e")
            await pilot.press("ctrl+d")
            await pilot.pause()
            assert app.screen is host, "no form and no dialog opened"


async def test_settings_bandwidth_repository_admin_credentials_and_delete(server):
    from rm_tui.screens.forms import BandwidthForm
    from rm_tui.screens.repo_form import RepoForm
    from rm_tui.screens.shown_once import ShownOnceDialog

    host_id, _ = await server.enroll("web-1")
    app = new_app(server)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await wait_for(lambda: host.settings_loaded, what="settings loaded")
        await pilot.press("7")
        assert "press p to set one" in text_of(host, "#settings-text")

        # Bandwidth: the first field has focus, typed digits land there, the toast says what was saved.
        await pilot.press("e")
        await wait_for(lambda: isinstance(app.screen, BandwidthForm), what="bandwidth form")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "upload_kbps"
        await type_text(pilot, "750")
        await pilot.press("ctrl+s")
        await wait_for(lambda: any("upload 750 KiB/s, download unlimited" in t for t in toasts(app)),
                       what="bandwidth toast")
        status, bw = await server.call("GET", f"/hosts/{host_id}/bandwidth")
        assert bw.get("upload_kbps") == 750

        # Repository with a generated password: shown once, never in the settings text.
        await pilot.press("p")
        await wait_for(lambda: isinstance(app.screen, RepoForm), what="repo form")
        await pilot.pause()
        assert app.focused.id == "url"
        await type_text(pilot, "/srv/restic/web-1")
        await pilot.press("ctrl+s")
        await wait_for(lambda: isinstance(app.screen, ShownOnceDialog), what="generated password shown once")
        password = app.screen.secrets[0].value
        assert len(password) >= 32
        await pilot.press("escape")
        await wait_for(lambda: host.pane("settings").repo is not None and "/srv/restic/web-1" in text_of(host, "#settings-text"),
                       what="repository shown")
        assert password not in text_of(host, "#settings-text")

        # Admin credentials for prune: a typed password, a REST user.
        await pilot.press("a")
        await wait_for(lambda: isinstance(app.screen, RepoForm) and app.screen.admin, what="admin form")
        await pilot.pause()
        await type_text(pilot, "/srv/restic/web-1")
        app.screen.query_one("#generate_password").value = False
        app.screen.query_one("#password", Input).value = "admin-secret-pw"
        await pilot.press("ctrl+s")
        await wait_for(lambda: host.pane("settings").repo is not None and host.pane("settings").repo.has_admin_credentials, what="admin creds saved")

        # Delete the host (asks first); the screen closes and the fleet drops the row.
        await pilot.press("ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await pilot.press("y")
        await wait_for(lambda: app.screen is not host and host_id not in app.screen.hosts, what="host gone")
    status, _ = await server.call("GET", f"/hosts/{host_id}")
    assert status == 404


async def test_host_jobs_cursor_stays_on_its_job_when_new_jobs_arrive(server):
    host_id, _ = await server.enroll("web-1")
    group = await make_group(server, host_id)

    async def run() -> str:
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run", role="operator")
        assert status in (200, 201, 202), body
        return body["job"]["id"]

    first = await run()
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await pilot.press("4")
        table = host.query_one("#jobs-table", ResourceTable)
        assert app.focused is table and table.cursor_key == first
        second = await run()
        await wait_for(lambda: table.keys[:2] == [second, first], what="new job listed above")
        assert table.cursor_key == first, "the cursor follows its job, not its row number"
        await pilot.press("k")
        assert table.cursor_key == second
        await pilot.press("G")
        assert table.cursor_key == first


async def test_schedule_and_snapshot_cursors_stay_on_their_rows_when_rows_arrive_above(server):
    """The schedules and snapshots tabs move and keep their cursor like every other list:
    j/k/g/G move it, a reload with a new row above leaves it on its item (so e, enter and d
    act on the row the operator chose), and focus is back on the table after a form closes."""
    host_id, agent_token = await server.enroll("web-1")
    group = await make_group(server, host_id)

    async def schedule(name: str) -> str:
        status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                         json={"name": name, "cron": "0 2 * * *", "source_group_ids": [group["id"]]})
        assert status == 201, body
        return body["id"]

    daily, weekly = await schedule("b-daily"), await schedule("d-weekly")
    now = datetime.now(timezone.utc)
    snaps = [p.SnapshotInfo(id=f"{i:02d}" * 32, short_id=f"{i:02d}" * 4, time=now - timedelta(hours=3 - i),
                            paths=["/etc"], tags=["etc"]) for i in range(3)]
    agent = TestAgent(server, agent_token)
    await agent.connect()
    await agent.send(p.SnapshotsReport(snapshots=snaps[:2]))
    await wait_for(lambda: _snapshot_count(server, host_id), what="snapshots stored")

    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        table = host.query_one("#schedules-table")
        assert table.row_count == 2 and host.pane("schedules").selected() == daily
        # "3j" in one burst, as tmux or a fast typist sends it: the j is for the new tab
        app.post_message(events.Key("3", "3"))
        app.post_message(events.Key("j", "j"))
        await wait_for(lambda: app.focused is table and host.pane("schedules").selected() == weekly, what="3j: 2nd schedule")
        hourly = await schedule("a-hourly")  # sorts above both: schedule.updated reloads the tab
        await wait_for(lambda: table.row_count == 3, what="new schedule listed")
        assert host.pane("schedules").selected() == weekly, "the cursor stays on its schedule, not its row number"
        await pilot.press("g")
        assert host.pane("schedules").selected() == hourly, "the new schedule is listed above"
        await pilot.press("G")
        assert host.pane("schedules").selected() == weekly
        await pilot.press("k")
        assert host.pane("schedules").selected() == daily
        await pilot.press("e")
        await wait_for(lambda: isinstance(app.screen, ScheduleForm), what="edit form")
        assert app.screen.query_one("#name", Input).value == "b-daily", "e edits the row under the cursor"
        await pilot.press("escape")
        assert app.screen is host and app.focused is table, "focus is back on the table after the form"

        await pilot.press("5")
        await wait_for(lambda: host.settings_loaded, what="snapshots loaded")
        table = host.query_one("#snapshots-table")
        newest, older, oldest = (s.id for s in reversed(snaps))
        assert app.focused is table and table.row_count == 2 and host.pane("snapshots").selected() == older, "newest first"
        await pilot.press("j")
        assert host.pane("snapshots").selected() == oldest
        await agent.send(p.SnapshotsReport(snapshots=snaps))  # a newer snapshot, listed above
        await wait_for(lambda: _snapshot_count(server, host_id, 3), what="third snapshot stored")
        await pilot.press("ctrl+r")
        await wait_for(lambda: table.row_count == 3, what="reloaded with the new snapshot")
        assert host.pane("snapshots").selected() == oldest, "the cursor stays on its snapshot"
        await pilot.press("g")
        assert host.pane("snapshots").selected() == newest
        await pilot.press("G", "enter")
        await wait_for(lambda: isinstance(app.screen, SnapshotBrowser), what="snapshot browser")
        assert app.screen.snapshot_id == oldest, "enter opens the snapshot under the cursor"
        await pilot.press("escape")
        await wait_for(lambda: app.screen is host, what="back on the host")
        assert app.focused is table and host.pane("snapshots").selected() == oldest
    await agent.close()


async def test_tab_cycles_tabs_and_focus_stays_on_the_tables(server):
    host_id, _ = await server.enroll("web-1")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        seen = []
        for _ in range(8):
            await pilot.press("tab")
            seen.append(host.tab)
            focused = app.focused
            assert focused is not None
            expected = host.query(f"#{host.tab}-table")
            # a table tab: its table; a text tab: the tab itself (its keys lead the footer)
            assert focused is (expected.first() if expected else host.pane(host.tab)), host.tab
        assert seen == ["groups", "schedules", "jobs", "snapshots", "maintenance", "settings", "history", "overview"]
        await pilot.press("shift+tab")
        assert host.tab == "history"


async def test_schedule_next_run_names_its_zone_and_the_zone_column_fits(server):
    """A next run without a zone was read as local time; America/New_York was cut to 14 columns."""
    from zoneinfo import ZoneInfo

    host_id, _ = await server.enroll("web-1")
    group = await make_group(server, host_id)
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                     json={"name": "nightly", "cron": "0 2 * * *", "timezone": "America/New_York",
                                           "source_group_ids": [group["id"]]})
    assert status == 201, body
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await pilot.press("3")
        table = host.query_one("#schedules-table", ResourceTable)
        await wait_for(lambda: table.row_count == 1, what="schedule row")
        await pilot.pause()
        shown = table.render_line(1).text  # the row as drawn, header on line 0
        assert "America/New_York" in shown, shown
        next_run = cell(table, body["id"], "next")
        zone = datetime.now(ZoneInfo("America/New_York")).strftime("%Z")  # EST or EDT
        assert next_run.endswith(f"02:00 {zone}"), next_run
        assert f"02:00 {zone}" in shown, shown


async def test_a_tab_redrawn_while_its_screen_is_taken_down_is_quiet(server):
    """A load, timer or event can end while the host screen closes: Textual removes a tab's
    children before the tab, so the tab is still mounted but its parts are gone. Redrawing
    then must do nothing; query_one's NoMatches in a worker ended the console (seen in a run:
    a history load finishing as the app shut down)."""
    host_id, _ = await server.enroll("web-1")
    await make_group(server, host_id)
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await wait_for(lambda: host.loaded and host.settings_loaded, what="every tab loaded")
        redraws = {"overview": "render_overview", "groups": "changed", "schedules": "render_rows", "jobs": "render_rows",
                   "snapshots": "render_rows", "maintenance": "render_text", "settings": "render_text",
                   "history": "render_head"}
        for tab in host.tabs:
            await tab.remove_children()  # as the screen's removal does first
            assert tab.is_mounted
        for tab in host.tabs:
            name = tab.id.removesuffix("-tab")
            getattr(tab, redraws[name])()  # raised NoMatches before
        await host.pane("history").show()
        assert all(not tab.children for tab in host.tabs), "a redraw mounted into a tab being taken down"
