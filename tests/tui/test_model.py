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


def test_a_failed_drill_is_a_problem_and_drill_jobs_update_last_verified():
    from datetime import timedelta

    from rm_core.api import LastVerified
    from rm_core.jobs import Job
    from rm_core.enums import JobState

    m = FleetModel()
    ok = LastVerified(job_id="d1", state="succeeded", finished_at=NOW - timedelta(hours=2))
    m.load([host(0), host(1, last_verified=ok), host(2, status="offline")])
    assert problem(m.hosts[host(1).id]) is None
    m.toggle_problems()
    m.visible()
    bad = Job(id="d2", host_id=host(1).id, kind="drill", state="failed", actor_kind="system", created_at=NOW,
              finished_at=NOW, summary={"files": 8, "bytes": 100, "mismatches": 1})
    assert m.job(bad)
    lv = m.hosts[host(1).id].last_verified
    assert (lv.job_id, lv.state.value, lv.mismatches) == ("d2", "failed", 1)
    assert problem(m.hosts[host(1).id]) == "drill"
    # a failed drill ranks above an offline host: its backups may not come back
    assert m.order_changed and m.visible()[:2] == [host(1).id, host(2).id]
    assert m.counts()["drill"] == 1 and m.counts()["problems"] == 2
    m.set_filter("drill")
    assert m.visible() == [host(1).id]
    # an older drill finishing late, or a cancelled one, does not replace the newest result
    late = bad.model_copy(update={"id": "d0", "state": JobState.succeeded, "finished_at": NOW - timedelta(days=1)})
    m.job(late)
    m.job(bad.model_copy(update={"id": "d3", "state": JobState.cancelled, "finished_at": NOW + timedelta(hours=1)}))
    assert m.hosts[host(1).id].last_verified.job_id == "d2"
    # sort by last verified: failed first, then the oldest good one, hosts without drills last
    m.set_filter("")
    m.toggle_problems()
    m.put(host(3, last_verified=ok))
    m.set_sort("verified")
    assert m.visible() == [host(1).id, host(3).id, host(0).id, host(2).id]


def test_verified_and_live_query_wording():
    from datetime import timedelta

    from rm_tui.format import diff_summary, query_problem, verified

    assert verified(None, None) == ""
    assert verified("succeeded", NOW - timedelta(hours=2), NOW) == "2h ago"
    assert verified("failed", NOW - timedelta(minutes=5), NOW) == "failed 5m"
    hid = "01JDZ3K4M5N6P7Q8R9S0T1V2W3"
    msg = f"host {hid} is offline: its agent must be connected to look inside its repository"
    assert query_problem("host_offline", 409, msg, "web-1", hid) == (
        "web-1 is offline: its agent must be connected to look inside its repository "
        "(it answers again once its agent reconnects)")
    assert "upgrade rm-agent" in query_problem("agent_too_old", 409, f"the agent of host {hid} is too old; "
                                               "upgrade rm-agent on that host", "web-1", hid)
    assert query_problem("gateway_timeout", 504, "no answer", "web-1", hid).endswith("can take longer)")
    stats = {"changed_files": 2, "added": {"files": 3, "dirs": 1, "bytes": 2048},
             "removed": {"files": 1, "dirs": 0, "bytes": 10, "others": 1}}
    assert diff_summary(stats, {}) == ["files: +3 added · -1 removed · 2 changed",
                                       "dirs: +1 added · -0 removed · 1 other (symlinks, devices) added or removed",
                                       "data: +2.0 KiB added · -10 B removed"]
    assert diff_summary({}, {"modified": 4})[0] == "files: +0 added · -0 removed · 4 changed"


def test_an_overdue_drill_is_a_problem_even_after_a_good_one():
    from datetime import timedelta

    from rm_core.api import LastVerified

    m = FleetModel()
    ok = LastVerified(job_id="d1", state="succeeded", finished_at=NOW - timedelta(days=9))
    m.load([host(0), host(1, last_verified=ok), host(2, status="offline")])
    assert problem(m.hosts[host(1).id]) is None and m.counts().get("drill", 0) == 0
    # the ticker flags the group and the server sends host.updated with drill_overdue
    m.put(host(1, last_verified=ok, drill_overdue=True))
    assert problem(m.hosts[host(1).id]) == "drill"
    assert m.counts()["drill"] == 1 and m.counts()["problems"] == 2
    m.toggle_problems()
    assert m.visible()[:2] == [host(1).id, host(2).id]
    # a host that never had a good drill but is overdue sorts with the failed ones
    m.put(host(0, drill_overdue=True))
    m.set_sort("verified")
    assert m.visible()[:2] == [host(0).id, host(1).id]


def test_anomaly_and_a_late_copy_are_problems_with_a_copy_lag_sort():
    from datetime import timedelta

    from rm_tui.fleet_cells import copy_cell, name_cell

    now = datetime.now(timezone.utc)
    m = FleetModel()
    hosts = [host(0), host(1, open_anomalies=1, anomaly="41,203 files changed; usual 80–140", stale=True),
             host(2, copy_enabled=True, copy_behind_since=now - timedelta(hours=30),
                  copy_overdue_at=now - timedelta(hours=6)),
             host(3, copy_enabled=True, copy_behind_since=now - timedelta(hours=2),
                  copy_overdue_at=now + timedelta(hours=22)),
             host(4, copy_enabled=True), host(5, status="offline")]
    m.load(hosts)
    assert [problem(h) for h in hosts] == [None, "anomaly", "copy", None, None, "offline"]
    c = m.counts()
    assert (c["anomaly"], c["copy"], c["problems"]) == (1, 1, 3)
    m.set_filter("copy")
    assert m.visible() == [hosts[2].id]
    m.set_filter("")
    m.set_sort("copy")
    assert m.visible()[:4] == [hosts[2].id, hosts[3].id, hosts[4].id, hosts[0].id], "furthest behind first"
    assert copy_cell(hosts[2]).plain == "1d" and "red" in str(copy_cell(hosts[2]).style)
    assert copy_cell(hosts[3]).plain == "2h" and copy_cell(hosts[4]).plain == "ok" and copy_cell(hosts[0]).plain == ""
    assert "anomaly" in name_cell(hosts[1]).plain and "stale" in name_cell(hosts[1]).plain
