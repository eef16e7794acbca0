"""The fleet model and the formatting helpers: pure, no terminal."""

from __future__ import annotations

from datetime import datetime, timezone

from rm_core.api import Host, LastBackup
from rm_tui.fleet_model import FleetModel, problem
from rm_tui.format import duration, human_summary, plural, short_ids

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def host(i: int, **kw) -> Host:
    return Host(id=f"01J{i:023d}", hostname=kw.pop("hostname", f"h-{i:05d}"), status=kw.pop("status", "online"), **kw)


def test_sort_filter_and_problems_on_20000_hosts():
    m = FleetModel()
    hosts = [host(i) for i in range(20_000)]
    hosts[7] = host(7, status="offline")
    hosts[9] = host(9, stale=True)
    hosts[11] = host(11, schedule_version=2, applied_schedule_version=1)
    hosts[13] = host(13, last_backup=LastBackup(job_id="j", state="failed", finished_at=NOW))
    m.load(hosts)
    assert m.visible()[:2] == [hosts[0].id, hosts[1].id]
    m.toggle_problems()
    assert m.visible()[:4] == [hosts[9].id, hosts[13].id, hosts[7].id, hosts[11].id]
    assert [problem(m.hosts[i]) for i in m.visible()[:4]] == ["stale", "failed", "offline", "drift"]
    m.toggle_problems()
    m.set_filter("h-1999")
    assert len(m.visible()) == 10  # h-19990 … h-19999
    m.set_filter("offline")
    assert m.visible() == [hosts[7].id]
    c = m.counts()
    assert (c["hosts"], c["offline"], c["stale"], c["failed"], c["drift"], c["problems"]) == (20_000, 1, 1, 1, 1, 4)


def test_an_event_reorders_only_when_the_host_moved():
    m = FleetModel()
    m.load([host(i) for i in range(5)])
    m.set_sort("status")
    m.visible()
    m.put(host(2, last_seen=NOW))  # same status: order kept, nothing to re-sort
    assert not m.order_changed
    m.put(host(2, status="offline"))
    assert m.order_changed and m.visible()[0] == host(2).id  # offline sorts before online
    m.set_sort("status")  # same column again: reversed
    assert m.visible()[-1] == host(2).id


def test_human_formatting():
    assert plural(1, "host") == "1 host" and plural(20_000, "host") == "20,000 hosts"
    assert duration(1.678579412) == "1.7s" and duration(303) == "5m 03s" and duration(7620) == "2h 07m"
    assert human_summary({"files_new": 12, "data_added": 377507347, "total_duration": 1.678579412}) \
        == "12 new files · 360.0 MiB added in 1.7s"
    assert short_ids("host:01JDZ3K4M5N6P7Q8R9S0T1V2W3") == "host:s0t1v2w3"


def test_counts_follow_every_change():
    m = FleetModel()
    m.load([host(i) for i in range(6)])
    m.put(host(1, status="offline"))
    m.put(host(2, stale=True))
    m.put(host(2, stale=False, schedule_version=3, applied_schedule_version=2))
    m.remove(host(3).id)
    fresh = FleetModel()
    fresh.load(list(m.hosts.values()))
    assert m.counts() == fresh.counts() == {"online": 4, "offline": 1, "drift": 1, "problems": 2, "hosts": 5}
