"""The fleet's next-run column (crons by the console's clock) and a fleet policy push
followed from its events alone, against a real server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.conftest import TestAgent, wait_for
from tests.tui.helpers import SIZE, cell, make_group, new_app, quick_sign_in

T0 = datetime(2026, 1, 1, 8, 21, tzinfo=timezone.utc)


def names(fleet) -> list[str]:
    return [fleet.hosts[k].hostname for k in fleet.table.keys]


async def schedule(server, host_id: str, name: str, cron: str, tz: str = "UTC") -> dict:
    group = await make_group(server, host_id, f"{name}-files")
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                     json={"name": name, "cron": cron, "timezone": tz,
                                           "source_group_ids": [group["id"]]})
    assert status == 201, body
    return body


async def test_next_run_column_sorts_and_follows_clock_and_schedule_events(server):
    ids = {n: (await server.enroll(n))[0] for n in ("a-host", "b-host", "c-host")}
    sched_a = await schedule(server, ids["a-host"], "nightly", "0 3 * * *")
    # 09:30 in Berlin is 08:30 UTC in winter: the host's own time zone counts
    await schedule(server, ids["b-host"], "morning", "30 9 * * *", "Europe/Berlin")
    await schedule(server, ids["b-host"], "new-year", "0 0 1 1 *")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        nr = fleet.model.next_runs
        await wait_for(lambda: nr.loaded, what="crons loaded")
        now = [T0]
        nr.clock = lambda: now[0]
        fleet.table.invalidate(None)
        assert [cell(fleet.table, ids[n], "next") for n in ("a-host", "b-host", "c-host")] == ["in 18h", "in 9m", "—"]
        sort_binding = app.screen.active_bindings["T"].binding
        assert sort_binding.description == "Sort by next run", "the sort key is in the ? panel"
        loads = fleet.loads

        await pilot.press("T")
        assert names(fleet) == ["b-host", "a-host", "c-host"]
        assert "sorted by next run" in str(fleet.query_one("#fleet-status").render())
        # the clock passes b-host's run: its next is tomorrow, after a-host's
        now[0] = T0 + timedelta(minutes=10)
        fleet.tick()
        await wait_for(lambda: names(fleet) == ["a-host", "b-host", "c-host"], what="re-sorted by the clock")
        assert cell(fleet.table, ids["b-host"], "next") == "in 23h"

        # a new schedule on c-host arrives as an event with its crons
        await schedule(server, ids["c-host"], "early", "0 1 * * *")
        await wait_for(lambda: names(fleet) == ["c-host", "a-host", "b-host"], what="c-host's new schedule")
        assert cell(fleet.table, ids["c-host"], "next") == "in 16h"
        # a deleted one: no next run, last in the order
        status, _ = await server.call("DELETE", f"/hosts/{ids['a-host']}/schedules/{sched_a['id']}", role="operator")
        assert status == 204
        await wait_for(lambda: names(fleet) == ["c-host", "b-host", "a-host"], what="a-host without schedule")
        assert cell(fleet.table, ids["a-host"], "next") == "—"
        assert fleet.loads == loads, "events and the clock, not reloads"


async def test_fleet_policy_push_is_followed_without_reloading_the_fleet(server):
    ids = {n: await server.enroll(n) for n in ("web-1", "web-2", "db-1")}
    agent = TestAgent(server, ids["web-1"][1])
    await agent.connect()
    await agent.expect("schedule.set")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        await wait_for(lambda: fleet.model.next_runs.loaded, what="crons loaded")
        loads = fleet.loads
        status, body = await server.call("PUT", "/fleet/policies/nightly", role="operator",
                                         json={"hosts": {"q": "web"}, "includes": ["/etc"], "cron": "0 3 * * *"})
        assert status == 200 and body["hosts"] == 2, body
        web = [ids["web-1"][0], ids["web-2"][0]]
        await wait_for(lambda: all(fleet.hosts[h].schedule_version == 1 for h in web), what="new versions")
        await wait_for(lambda: all(cell(fleet.table, h, "drift") in ("v0→v1", "v1") for h in web),
                       what="schedule column")
        assert all(cell(fleet.table, h, "next").startswith("in ") for h in web)
        assert cell(fleet.table, ids["db-1"][0], "next") == "—"
        # the online agent applies it: its ack (versions, no crons) keeps the next run
        pushed = await agent.expect("schedule.set")
        from rm_core import protocol as p

        await agent.send(p.ScheduleAck(version=pushed.payload.version))
        await wait_for(lambda: fleet.hosts[web[0]].applied_schedule_version == 1, what="ack shown")
        assert cell(fleet.table, web[0], "next").startswith("in ")
        assert fleet.loads == loads and fleet._reload_timer is None, "no reload of the host list"
    await agent.close()


async def test_a_deleted_host_row_is_drawn_blank_until_the_next_tick_drops_it(server):
    """The model forgets a deleted host at once, the table's order follows on the next tick:
    a repaint in between (e.g. back from that host's screen) must not crash on its row."""
    ids = {n: (await server.enroll(n))[0] for n in ("a-host", "b-host")}
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        status, _ = await server.call("DELETE", f"/hosts/{ids['a-host']}", role="operator")
        assert status == 204
        await wait_for(lambda: ids["a-host"] not in fleet.hosts, what="host removed from the model")
        assert fleet.cells(ids["a-host"]) == []
        fleet.table.invalidate(None)
        for y in range(3):
            fleet.table.render_line(y)
        await wait_for(lambda: fleet.table.keys == [ids["b-host"]], what="row dropped")
