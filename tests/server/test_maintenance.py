"""Maintenance: the pure decide()/stale_hosts() rules as tables, then the ticker with a fake clock and a webhook."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rm_core.enums import HostStatus, JobKind
from rm_server.keys import MAINTAINER, NOTIFIER
from rm_server.services.maintenance import Cadence, HostState, ScheduledGroup, decide, stale_hosts
from tests.conftest import set_webhook, wait_for
from tests.server.server_helpers import finished, make_group, make_schedule, online_host, started

NOW = datetime(2024, 5, 10, 12, 30, tzinfo=timezone.utc)
DAILY_2AM = Cadence("0 2 * * *", True)
ONLINE = HostState("h", HostStatus.online, has_admin_credentials=True)


@pytest.mark.parametrize("host, cadences, last_runs, expected", [
    # due: fired at 02:00 today, never run, within 24 h
    (ONLINE, {"forget": DAILY_2AM}, {}, [("h", JobKind.forget, {})]),
    # already ran after today's fire
    (ONLINE, {"forget": DAILY_2AM}, {("h", "forget"): NOW.replace(hour=2, minute=1)}, []),
    # ran before today's fire: due again
    (ONLINE, {"forget": DAILY_2AM}, {("h", "forget"): NOW - timedelta(days=1, hours=1)}, [("h", JobKind.forget, {})]),
    # disabled, no cron, bad cron
    (ONLINE, {"forget": Cadence("0 2 * * *", False)}, {}, []),
    (ONLINE, {"forget": Cadence(None, True)}, {}, []),
    (ONLINE, {"forget": Cadence("nope", True)}, {}, []),
    # offline / pending hosts are skipped
    (HostState("h", HostStatus.offline, True), {"forget": DAILY_2AM}, {}, []),
    (HostState("h", HostStatus.pending, True), {"check": DAILY_2AM}, {}, []),
    # no repository yet
    (HostState("h", HostStatus.online, True, has_repo=False), {"check": DAILY_2AM}, {}, []),
    # prune needs admin credentials
    (HostState("h", HostStatus.online, False), {"prune": DAILY_2AM}, {}, []),
    (ONLINE, {"prune": DAILY_2AM}, {}, [("h", JobKind.prune, {})]),
    # check carries read_data_subset
    (ONLINE, {"check": Cadence("0 2 * * *", True, "5%")}, {}, [("h", JobKind.check, {"read_data_subset": "5%"})]),
    # never run and the last fire is long past: wait for the next fire
    (ONLINE, {"check": Cadence("0 2 1 1 *", True)}, {}, []),
    # several kinds at once
    (ONLINE, {"forget": DAILY_2AM, "check": DAILY_2AM, "prune": Cadence("0 3 * * 0", True)},
     {("h", "check"): NOW}, [("h", JobKind.forget, {})]),
])
def test_decide_table(host, cadences, last_runs, expected):
    got = decide(NOW, [host], {host.id: cadences}, last_runs)
    assert [(d.host_id, d.kind, d.params) for d in got] == expected


def test_decide_many_hosts_independent():
    hosts = [HostState("a", HostStatus.online, True), HostState("b", HostStatus.offline, True),
             HostState("c", HostStatus.online, False)]
    cadences = {h.id: {"forget": DAILY_2AM, "prune": DAILY_2AM} for h in hosts}
    got = decide(NOW, hosts, cadences, {("a", "prune"): NOW})
    assert sorted((d.host_id, d.kind.value) for d in got) == [("a", "forget"), ("c", "forget")]


HOURLY = "0 * * * *"
DAILY = "0 2 * * *"


@pytest.mark.parametrize("groups, last_success, expected", [
    # hourly: limit is max(1.5 h, 2 h) = 2 h
    ([ScheduledGroup("a", "g1", HOURLY, "UTC", NOW - timedelta(days=10))], {"g1": NOW - timedelta(hours=1, minutes=59)}, set()),
    ([ScheduledGroup("a", "g1", HOURLY, "UTC", NOW - timedelta(days=10))], {"g1": NOW - timedelta(hours=2, minutes=1)}, {"a"}),
    # daily: limit is 36 h
    ([ScheduledGroup("a", "g1", DAILY, "UTC", NOW - timedelta(days=10))], {"g1": NOW - timedelta(hours=35)}, set()),
    ([ScheduledGroup("a", "g1", DAILY, "UTC", NOW - timedelta(days=10))], {"g1": NOW - timedelta(hours=37)}, {"a"}),
    # never backed up: the clock starts when the schedule was made
    ([ScheduledGroup("a", "g1", DAILY, "UTC", NOW - timedelta(hours=30))], {}, set()),
    ([ScheduledGroup("a", "g1", DAILY, "UTC", NOW - timedelta(hours=40))], {}, {"a"}),
    # any stale group makes the host stale; other hosts are independent
    ([ScheduledGroup("a", "g1", DAILY, "UTC", NOW - timedelta(days=9)),
      ScheduledGroup("a", "g2", DAILY, "UTC", NOW - timedelta(days=9)),
      ScheduledGroup("b", "g3", DAILY, "UTC", NOW - timedelta(days=9))],
     {"g1": NOW - timedelta(hours=1), "g2": NOW - timedelta(days=3), "g3": NOW - timedelta(hours=3)}, {"a"}),
    # a broken cron never makes a host stale
    ([ScheduledGroup("a", "g1", "bogus", "UTC", NOW - timedelta(days=9))], {}, set()),
])
def test_stale_hosts_table(groups, last_success, expected):
    assert stale_hosts(NOW, groups, last_success) == expected


def test_a_fleet_on_a_few_crons_costs_a_few_cron_evaluations():
    """The ticker runs every minute over every scheduled group: at 19k groups one croniter
    evaluation each held the server's loop for 7.5 s. One per (cron, zone) now."""
    from rm_core import cron
    groups = [ScheduledGroup(f"h{i}", f"g{i}", (HOURLY, DAILY)[i % 2], "UTC", NOW - timedelta(hours=i % 50))
              for i in range(5000)]
    cron._next_fires.cache_clear()
    stale = stale_hosts(NOW, groups, {})
    assert cron._next_fires.cache_info().misses == 2
    # the same answer as one group at a time
    assert stale == {g.host_id for g in groups if stale_hosts(NOW, [g], {})}
    assert 0 < len(stale) < len(groups)
    cron._previous_fire.cache_clear()
    due = decide(NOW, [HostState(f"h{i}", HostStatus.online, True) for i in range(3000)],
                 {f"h{i}": {"forget": DAILY_2AM} for i in range(3000)}, {})
    assert len(due) == 3000 and cron._previous_fire.cache_info().misses == 1


# ------------------------------------------------------------ the ticker against a real server


async def test_ticker_dispatches_maintenance_as_system(server):
    host_id, agent = await online_host(server)
    await make_group(server, host_id, retention={"keep_daily": 7})
    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                  json={"url": "/srv/r", "password": "pw-123456"})
    init = await agent.expect("command.run")
    assert init.payload.kind == "init"
    now = server.clock.now
    cron = f"{(now.minute - 1) % 60} * * * *"  # fired within the last hour
    status, body = await server.call("PUT", f"/hosts/{host_id}/maintenance", role="operator", json={
        "forget": {"cron": cron, "enabled": True}, "prune": {"cron": cron, "enabled": True},
        "check": {"cron": cron, "enabled": True, "read_data_subset": "1/10"}})
    assert status == 200, body
    status, body = await server.call("GET", f"/hosts/{host_id}/maintenance", role="viewer")
    assert body["check"]["read_data_subset"] == "1/10"
    maintainer = server.app[MAINTAINER]
    await maintainer.tick()
    runs = {}
    for _ in range(2):
        env = await agent.expect("command.run")
        runs[env.payload.kind.value] = env.payload
    assert set(runs) == {"forget", "check"}  # no admin credentials: no prune
    assert runs["check"].params["read_data_subset"] == "1/10"
    assert [g["tag"] for g in runs["forget"].params["source_groups"]] == ["etc"]
    status, jobs = await server.call("GET", "/jobs", params={"host_id": host_id})
    assert {j["kind"]: j["actor_kind"] for j in jobs["jobs"] if j["kind"] != "init"} == {
        "forget": "system", "check": "system"}
    # The same tick again makes nothing new.
    await maintainer.tick()
    status, again = await server.call("GET", "/jobs", params={"host_id": host_id})
    assert len(again["jobs"]) == len(jobs["jobs"])

    # Offline: skipped.
    await agent.close()

    async def offline():
        return (await server.call("GET", f"/hosts/{host_id}", role="viewer"))[1]["status"] == "offline"

    await wait_for(offline, what="host offline")
    server.clock.advance(3600)
    await maintainer.tick()
    status, later = await server.call("GET", "/jobs", params={"host_id": host_id})
    assert len(later["jobs"]) == len(jobs["jobs"])


async def test_maintenance_validation(server):
    host_id, _ = await server.enroll()
    status, body = await server.call("PUT", f"/hosts/{host_id}/maintenance", role="operator",
                                     json={"forget": {"cron": "99 * * * *", "enabled": True}})
    assert status == 400 and body["error"]["details"]["field"] == "forget.cron"
    status, body = await server.call("PUT", f"/hosts/{host_id}/maintenance", role="operator",
                                     json={"prune": {"enabled": True}})
    assert status == 400 and body["error"]["details"]["field"] == "prune.cron"
    status, body = await server.call("PUT", f"/hosts/{host_id}/maintenance", role="operator",
                                     json={"check": {"cron": "0 3 31 2 *", "enabled": False}})
    assert status == 400 and body["error"]["details"]["field"] == "check.cron"


async def test_stale_and_recovery_notify_once_each(server, webhook):
    url, received = webhook
    await set_webhook(server, url)
    host_id, agent = await online_host(server)
    group = await make_group(server, host_id)
    await make_schedule(server, host_id, [group["id"]], cron="0 * * * *")
    maintainer = server.app[MAINTAINER]
    await maintainer.tick()
    assert received == []
    status, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["stale"] is False

    server.clock.advance(3 * 3600)
    await maintainer.tick()
    await maintainer.tick()
    await wait_for(lambda: received, what="stale webhook")
    status, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["stale"] is True

    # A successful backup brings it back.
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run", role="operator")
    job_id = body["job"]["id"]
    await agent.send(started(job_id, source_group_id=group["id"]))
    await agent.send(finished(job_id, 2))
    await agent.expect("ack")
    await agent.expect("ack")
    await maintainer.tick()
    await maintainer.tick()
    await wait_for(lambda: len(received) >= 2, what="recovery webhook")
    status, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["stale"] is False and host["last_backup"]["state"] == "succeeded"
    await maintainer.tick()
    await wait_for(lambda: not server.app[NOTIFIER]._tasks, what="webhook posts done")
    events = [r["event"] for r in received]
    assert events == ["host.stale", "host.recovered"], events
    assert all(r["host_id"] == host_id for r in received)


async def test_failed_job_notifies(server, webhook):
    url, received = webhook
    await set_webhook(server, url)
    host_id, agent = await online_host(server)
    status, job = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "check"})
    await agent.send(started(job["id"], kind="check"))
    await agent.send(finished(job["id"], 2, state="failed", exit_code=1, error="Fatal: repository is damaged"))
    await wait_for(lambda: received, what="failure webhook")
    assert received[0]["event"] == "job.failed" and received[0]["job"]["id"] == job["id"]
    assert received[0]["job"]["error"] == "Fatal: repository is damaged"
    status, ok = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "unlock"})
    await agent.send(started(ok["id"], kind="unlock"))
    await agent.send(finished(ok["id"], 2))
    await agent.expect("ack")
    await agent.expect("ack")
    await agent.expect("ack")
    await agent.expect("ack")
    await wait_for(lambda: not server.app[NOTIFIER]._tasks, what="webhook posts done")
    assert [r["event"] for r in received] == ["job.failed"]
