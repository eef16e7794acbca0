"""The fleet screen's operator features against a real server: sort, problems, marks, jobs."""

from __future__ import annotations

from datetime import datetime, timezone

from rm_core import protocol as p
from rm_tui.screens.bulk import BulkActionScreen
from rm_tui.screens.jobs import FleetJobsScreen
from rm_tui.screens.job_log import JobLogScreen
from tests.conftest import TestAgent, wait_for
from tests.tui.helpers import SIZE, cell, jobs_of, make_group, new_app, quick_sign_in, running, toasts


def names(fleet) -> list[str]:
    return [fleet.hosts[k].hostname for k in fleet.table.keys]


def status_line(fleet) -> str:
    return str(fleet.query_one("#fleet-status").render())


async def test_sort_by_column_keys_and_reverse(server):
    ids = {name: (await server.enroll(name)) for name in ("b-host", "c-host", "a-host")}
    agent = TestAgent(server, ids["c-host"][1])
    await agent.connect()
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        await wait_for(lambda: fleet.hosts[ids["c-host"][0]].status == "online", what="c-host online")
        assert names(fleet) == ["a-host", "b-host", "c-host"]
        fleet.table.move_to(ids["b-host"][0])
        await pilot.press("S")  # status: online < pending
        assert names(fleet) == ["c-host", "a-host", "b-host"]
        assert "sorted by status" in status_line(fleet)
        assert fleet.table.cursor_key == ids["b-host"][0], "the cursor stays on its host when rows move"
        await pilot.press("S")  # the same key again reverses
        assert names(fleet) == ["b-host", "a-host", "c-host"]
        await pilot.press("N")
        assert names(fleet) == ["a-host", "b-host", "c-host"]
        # an event that moves a host re-sorts on the next repaint, without reloading the list
        await pilot.press("S")
        loads = fleet.loads
        await agent.close()
        await wait_for(lambda: names(fleet) == ["c-host", "a-host", "b-host"] and status_line(fleet).count("offline"),
                       what="offline host sorted")
        assert fleet.loads == loads


async def test_problems_first_toggle(server):
    ids = {name: (await server.enroll(name)) for name in ("a-ok", "b-gone", "c-ok")}
    agents = {n: TestAgent(server, ids[n][1]) for n in ids}
    for a in agents.values():
        await a.connect()
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        await wait_for(lambda: all(h.status == "online" for h in fleet.hosts.values()), what="all online")
        await agents["b-gone"].close()
        await wait_for(lambda: fleet.hosts[ids["b-gone"][0]].status == "offline", what="b-gone offline")
        assert names(fleet) == ["a-ok", "b-gone", "c-ok"]
        await pilot.press("p")
        assert names(fleet)[0] == "b-gone"
        assert "problems first" in status_line(fleet) and "1 offline" in status_line(fleet)
        await pilot.press("p")
        assert names(fleet) == ["a-ok", "b-gone", "c-ok"]
    for n in ("a-ok", "c-ok"):
        await agents[n].close()


async def test_mark_hosts_and_run_a_group_on_all_marked(server):
    ids = {name: (await server.enroll(name)) for name in ("web-1", "web-2", "db-1")}
    for name in ("web-1", "web-2"):
        await make_group(server, ids[name][0], "etc")
    await make_group(server, ids["db-1"][0], "pgdump")
    app = new_app(server)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        fleet = await quick_sign_in(pilot, app)
        assert names(fleet) == ["db-1", "web-1", "web-2"]
        await pilot.press("down", "space", "space")  # marks web-1 and web-2 (space moves down)
        assert fleet.table.marks == {ids["web-1"][0], ids["web-2"][0]}
        assert "2 hosts marked" in status_line(fleet)
        await pilot.press("x")
        await wait_for(lambda: isinstance(app.screen, BulkActionScreen), what="bulk dialog")
        dialog = app.screen
        await wait_for(lambda: dialog.choices, what="choices read from the hosts")
        assert "source group:etc" in dialog.choices and "source group:pgdump" not in dialog.choices
        await pilot.press("enter")  # the first option: run source group 'etc' on both
        await wait_for(lambda: app.screen is fleet, what="dialog closed")
        await wait_for(lambda: any("started on 2 hosts" in t for t in toasts(app)), what="summary toast")
    for name, expected in (("web-1", 1), ("web-2", 1), ("db-1", 0)):
        jobs = await jobs_of(server, ids[name][0])
        assert len([j for j in jobs if j["kind"] == "backup"]) == expected, name


async def test_fleet_jobs_screen_follows_and_opens_the_log(server):
    host_id, agent_token = await server.enroll("web-1")
    group = await make_group(server, host_id)
    agent = TestAgent(server, agent_token)
    await agent.connect()
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        await pilot.press("J")
        await wait_for(lambda: isinstance(app.screen, FleetJobsScreen) and app.screen.loaded, what="jobs screen")
        jobs = app.screen
        assert jobs.table.row_count == 0
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run", role="operator")
        assert status in (200, 201, 202), body
        job_id = body["job"]["id"]
        await wait_for(lambda: job_id in jobs.table.keys, what="new job appears from events")
        await agent.expect("command.run")
        now = datetime.now(timezone.utc)
        await agent.send(p.JobStarted(job_id=job_id, started_at=now, kind="backup"))
        await agent.send(p.JobProgress(job_id=job_id, percent=42.0))
        await wait_for(lambda: "42%" in str(jobs.cells(job_id)[-1]), what="progress shown")
        assert app.focused is jobs.table
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, JobLogScreen), what="job log")
        await pilot.press("escape")
        await wait_for(lambda: app.screen is jobs, what="back to jobs")
        assert app.focused is jobs.table, "after esc from a log the jobs table has focus"
        await agent.send(p.JobFinished(job_id=job_id, seq=2, state="failed", exit_code=1, error="disk full",
                                       finished_at=datetime.now(timezone.utc)))
        await wait_for(lambda: "disk full" in str(jobs.cells(job_id)[-1]), what="failure kept for 24 h")
        await pilot.press("escape")
        assert app.screen is fleet
    await agent.close()


async def test_views_follow_events_new_host_and_schedule_delete(server):
    host_id, _ = await server.enroll("web-1")
    group = await make_group(server, host_id)
    status, sched = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                      json={"name": "nightly", "cron": "0 3 * * *", "timezone": "UTC",
                                            "source_group_ids": [group["id"]]})
    assert status == 201, sched
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        loads = fleet.loads
        version = fleet.hosts[host_id].schedule_version
        # a host enrolled while the console is open shows up (pending) without ctrl+r
        new_id, _ = await server.enroll("db-1")
        await wait_for(lambda: new_id in fleet.table.keys, what="pending host appears")
        assert fleet.hosts[new_id].status == "pending" and names(fleet) == ["db-1", "web-1"]
        # deleting a schedule bumps the version: the fleet's schedule column follows
        status, _ = await server.call("DELETE", f"/hosts/{host_id}/schedules/{sched['id']}", role="operator")
        assert status == 204
        await wait_for(lambda: fleet.hosts[host_id].schedule_version > version, what="new schedule version")
        await wait_for(lambda: f"v{fleet.hosts[host_id].schedule_version}" in cell(fleet.table, host_id, "drift"),
                       what="schedule column")
        assert fleet.loads == loads, "events, not reloads"


async def test_host_list_is_fetched_in_pages_and_loaded_once(server, monkeypatch):
    """The console pages through GET /hosts (keyset by id) and gets every host exactly once;
    signing in loads that list once, not again when the events stream reports connected."""
    from rm_tui import client as client_module
    from rm_tui.client import Client

    monkeypatch.setattr(client_module, "HOSTS_PAGE", 2)
    ids = {(await server.enroll(f"h-{i}"))[0] for i in range(5)}
    api = Client(server.url)
    api.token = server.tokens["admin"]
    try:
        assert sorted(h.id for h in await api.hosts()) == sorted(ids)
    finally:
        await api.close()
    calls = []
    real_hosts = Client.hosts

    async def counted(self):
        calls.append(1)
        return await real_hosts(self)

    monkeypatch.setattr(Client, "hosts", counted)
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        assert sorted(fleet.hosts) == sorted(ids)
        await wait_for(lambda: app.events_connected and not running(app, "fleet-load"), what="events connected")
        await pilot.pause()
        await wait_for(lambda: not running(app, "fleet-load"), what="no second load")
        assert fleet.loads == 1 and len(calls) == 1, "one list per events connection"
