"""rm-tui against a real in-process server, driven with Textual's Pilot."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from textual.widgets import Input

from rm_core import protocol as p
from rm_tui.app import make_app
from rm_tui.client import ApiError, Client, normalise_fingerprint
from rm_tui.format import age, size
from rm_tui.screens.job_log import JobLogScreen
from rm_tui.widgets.table import ResourceTable
from rm_tui.screens.login import LoginScreen
from tests.conftest import ADMIN_PASSWORD, TestAgent, wait_for
from tests.tui.helpers import (SIZE, cell, fleet_ready, jobs_of, make_group, new_app, open_host, quick_sign_in,
                               record_toasts, sign_in, toasts, type_text)

async def test_login_then_fleet_updates_live(server):
    host_id, agent_token = await server.enroll("web-1")
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, app)
        fleet = await fleet_ready(pilot, app)
        table = fleet.table
        assert cell(table, host_id, "host") == "web-1"
        assert cell(table, host_id, "status") == "pending"
        loads = fleet.loads

        agent = TestAgent(server, agent_token)
        assert (await agent.connect()).type == "hello.ok"
        await wait_for(lambda: cell(table, host_id, "status") == "online", what="row shows online")
        await agent.close()
        await wait_for(lambda: cell(table, host_id, "status") == "offline", what="row shows offline")
        assert fleet.loads == loads, "the row changed by an event, not by reloading the list"


async def test_filter_hides_rows(server):
    await server.enroll("web-1")
    await server.enroll("db-1")
    app = make_app(server.url)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, app)
        fleet = await fleet_ready(pilot, app)
        table = fleet.table
        assert table.row_count == 2
        await pilot.press("slash")
        # typing goes to the box while the table keeps focus (a focus change redraws it all)
        assert fleet.filtering and app.focused is table
        await type_text(pilot, "db")
        assert fleet.query_one("#filter", Input).value == "db"
        await pilot.press("enter")
        assert table.row_count == 1 and app.focused is table and not fleet.filtering
        await pilot.press("escape")
        assert table.row_count == 2
        assert [fleet.hosts[k].hostname for k in table.keys] == ["db-1", "web-1"]
        await pilot.press("slash", "z", "z")
        assert table.row_count == 0 and "no host matches 'zz'" in table.empty, table.empty
        await pilot.press("escape")
        assert table.row_count == 2


async def test_wrong_password_is_a_toast(server):
    app = record_toasts(make_app(server.url))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await sign_in(pilot, app, password="not the password")
        await wait_for(lambda: toasts(app, "error"), what="error toast")
        assert isinstance(app.screen, LoginScreen)
        assert app.focused is not None and app.focused.id == "password"


async def test_run_now_and_follow_the_log(server):
    host_id, agent_token = await server.enroll("web-1")
    group = await make_group(server, host_id)
    agent = TestAgent(server, agent_token)
    await agent.connect()
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        host = await open_host(pilot, app, fleet, host_id)
        await pilot.press("2")
        assert "Run now" in [b.binding.description for b in app.screen.active_bindings.values() if b.binding.show and b.enabled]

        await pilot.press("r")
        jobs = await wait_for(lambda: jobs_of(server, host_id), what="job created")
        job = jobs[0]
        assert job["kind"] == "backup" and job["source_group_id"] == group["id"] and job["actor_kind"] == "user"
        # r opens the new job's live log at once: no older job's log by mistake
        await wait_for(lambda: isinstance(app.screen, JobLogScreen), what="the new job's log")
        assert app.screen.job.id == job["id"]
        await pilot.press("escape")
        assert app.screen is host
        jobs_table = host.query_one("#jobs-table", ResourceTable)
        await wait_for(lambda: job["id"] in jobs_table.index, what="job row")
        assert jobs_table.cursor_key == job["id"], "the jobs tab's cursor is on the new job"

        # The agent runs it: the row follows job.updated, the log screen shows backlog then live lines.
        await agent.expect("command.run")
        now = datetime.now(timezone.utc)
        await agent.send(p.JobStarted(job_id=job["id"], started_at=now, kind="backup"))
        await agent.send(p.JobLog(job_id=job["id"], lines=[p.LogLine(seq=2, ts=now, text="scanning /etc")]))
        await wait_for(lambda: cell(jobs_table, job["id"], "state") == "running", what="job running")

        await pilot.press("4")
        assert app.focused is jobs_table
        jobs_table.move_to(job["id"])
        await pilot.press("l")
        await wait_for(lambda: isinstance(app.screen, JobLogScreen), what="log screen")
        log = app.screen
        assert isinstance(log, JobLogScreen)
        await wait_for(lambda: [ln.text for ln in log.lines] == ["scanning /etc"], what="backlog line")

        await agent.send(p.JobLog(job_id=job["id"], lines=[p.LogLine(seq=3, ts=now, text="processed 12 files")]))
        await agent.send(p.JobFinished(job_id=job["id"], seq=4, state="succeeded", exit_code=0))
        await wait_for(lambda: [ln.seq for ln in log.lines] == [2, 3], what="live line")
        await wait_for(lambda: log.job.state == "succeeded", what="job finished")

        await pilot.press("escape")
        assert app.screen is host
        await pilot.press("escape")
        assert app.screen is fleet
        await wait_for(lambda: cell(fleet.table, host_id, "result") == "succeeded",
                       what="fleet shows the backup result")
    await agent.close()


async def test_readonly_hides_and_refuses_run_now(server):
    host_id, _ = await server.enroll("web-1")
    await make_group(server, host_id)
    app = new_app(server, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        await open_host(pilot, app, fleet, host_id)
        await pilot.press("2")
        assert "Run now" not in [b.binding.description for b in app.screen.active_bindings.values() if b.binding.show]
        await pilot.press("r")
        await pilot.pause()
        assert not [w for w in app.workers if w.group == "run-now"]
    assert await jobs_of(server, host_id) == []


async def test_viewer_gets_no_run_now(server):
    host_id, _ = await server.enroll("web-1")
    await make_group(server, host_id)
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app, "viewer")
        await open_host(pilot, app, fleet, host_id)
        await pilot.press("2")
        assert "Run now" not in [b.binding.description for b in app.screen.active_bindings.values()
                                 if b.binding.show]


async def test_ended_session_returns_to_login(server):
    await server.enroll("web-1")
    app = record_toasts(make_app(server.url))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await sign_in(pilot, app)
        await fleet_ready(pilot, app)
        status, _ = await server.call("POST", "/auth/logout", role=None,
                                      headers={"Authorization": f"Bearer {app.client.token}"})
        assert status == 204
        await pilot.press("ctrl+r")
        await wait_for(lambda: isinstance(app.screen, LoginScreen), what="back at the login screen")
        assert "Signed out" in toasts(app, titles=True)


async def test_client_errors_carry_the_envelope(server):
    client = Client(server.url)
    try:
        try:
            await client.login("operator", "wrong password")
        except ApiError as exc:
            assert (exc.status, exc.code) == (401, "invalid_credentials")
        else:
            raise AssertionError("login with a wrong password succeeded")
        await client.login("operator", ADMIN_PASSWORD)
        try:
            await client.host("no-such-host")
        except ApiError as exc:
            assert (exc.status, exc.code) == (404, "not_found") and exc.message
        else:
            raise AssertionError("a missing host was found")
    finally:
        await client.close()
    unreachable = Client("http://127.0.0.1:9")
    try:
        await unreachable.hosts()
    except ApiError as exc:
        assert exc.code == "unreachable" and exc.status == 0
    finally:
        await unreachable.close()


def test_fingerprint_rules():
    fp = "AB:" * 31 + "AB"
    assert normalise_fingerprint(fp) == "ab" * 32
    assert normalise_fingerprint("sha256:" + "0" * 64) == "0" * 64
    for bad in ("abc", "zz" * 32):
        try:
            normalise_fingerprint(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{bad!r} accepted")
    try:
        Client("http://example.test", "0" * 64)
    except ValueError as exc:
        assert "https" in str(exc)
    else:
        raise AssertionError("a pinned fingerprint over plain http was accepted")


def test_formatting():
    now = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)
    assert age(None) == "—"
    assert age(now - timedelta(seconds=42), now) == "42s"
    assert age(now - timedelta(hours=3, minutes=5), now) == "3h"
    assert age(now - timedelta(days=2), now) == "2d"
    assert size(None) == "—" and size(512) == "512 B" and size(3 * 1024**3) == "3.0 GiB"
