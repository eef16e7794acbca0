"""NextRuns: each host's next run from its crons, by a clock, cheap per row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rm_tui.next_runs import NEVER, NextRuns, until

T0 = datetime(2026, 1, 1, 8, 21, tzinfo=timezone.utc)


def test_soonest_of_a_hosts_crons_in_each_time_zone():
    nr = NextRuns(clock=lambda: T0)
    nr.load({"a": [("0 3 * * *", "UTC")], "b": [("0 3 * * *", "Europe/Berlin"), ("30 9 * * *", "UTC")],
             "c": [("not a cron", "UTC")]})
    assert nr.next("a") == datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
    assert nr.next("b") == datetime(2026, 1, 1, 9, 30, tzinfo=timezone.utc)  # before Berlin's 03:00 (02:00 UTC)
    assert nr.next("c") is None and nr.next("unknown") is None
    assert nr.sort_key("b") < nr.sort_key("a") < nr.sort_key("c") == NEVER
    assert [until(nr.next(h), T0) for h in "abc"] == ["in 18h", "in 1h", "—"]


def test_the_clock_moves_on_and_back():
    now = [T0]
    nr = NextRuns(clock=lambda: now[0])
    nr.load({"a": [("30 8 * * *", "UTC")]})
    assert nr.next("a") == T0.replace(minute=30) and not nr.passed()
    now[0] = T0 + timedelta(minutes=10)
    assert nr.passed(), "the computed run is in the past now"
    assert nr.next("a") == T0.replace(minute=30) + timedelta(days=1) and not nr.passed()
    now[0] = T0  # a clock set back (a test, a corrected host clock) is not served a run too late
    assert nr.next("a") == T0.replace(minute=30)


def test_an_event_during_a_full_load_is_not_overwritten_by_the_older_list():
    nr = NextRuns(clock=lambda: T0)
    nr.begin_load()
    assert nr.put("a", [("0 1 * * *", "UTC")])
    assert not nr.put("a", [("0 1 * * *", "UTC")]), "unchanged"
    assert not nr.put("b", []), "had none, has none (its schedules were deleted meanwhile)"
    nr.load({"a": [("0 3 * * *", "UTC")], "b": [("0 3 * * *", "UTC")], "c": [("0 3 * * *", "UTC")]})
    assert nr.crons == {"a": (("0 1 * * *", "UTC"),), "c": (("0 3 * * *", "UTC"),)}
