"""The copy lag rule and the parser of restic copy's text, as tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rm_core.copies import GroupCopy, copy_lag
from rm_core.protocol import SnapshotInfo
from rm_core.restic_copy import CopyOutput

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
ETC = GroupCopy("etc", timedelta(hours=24))


def snap(i: str, hours: float, tag: str = "etc", original: str | None = None) -> SnapshotInfo:
    return SnapshotInfo(id=i * 32, time=T0 + timedelta(hours=hours), tags=[tag], original=original and original * 32)


def test_up_to_date_copy_has_no_lag():
    lag = copy_lag([snap("a1", 0), snap("a2", 1)], [snap("c1", 0, original="a1"), snap("c2", 1, original="a2")], [ETC])
    assert (lag.behind_since, lag.overdue_at, lag.missing) == (None, None, 0)


def test_lag_runs_from_the_oldest_snapshot_the_copy_misses():
    # copies stopped after a1: a2..a4 are missing; the copy is behind since a2, not a4
    prim = [snap("a1", 0), snap("a2", 24), snap("a3", 48), snap("a4", 72)]
    lag = copy_lag(prim, [snap("c1", 0, original="a1")], [ETC])
    assert lag.behind_since == T0 + timedelta(hours=24) and lag.missing == 3
    assert lag.overdue_at == T0 + timedelta(hours=48)


def test_one_missing_snapshot_is_its_own_age():
    lag = copy_lag([snap("a1", 0), snap("a2", 5)], [snap("c1", 0, original="a1")], [ETC])
    assert lag.behind_since == T0 + timedelta(hours=5) and lag.missing == 1


def test_snapshots_the_copys_retention_let_go_are_not_missing():
    # the copy keeps only the newest: a1, a2 are older than its newest copy and do not count
    prim = [snap("a1", 0), snap("a2", 24), snap("a3", 48)]
    assert copy_lag(prim, [snap("c3", 48, original="a3")], [ETC]).missing == 0


def test_only_copy_enabled_groups_count_and_a_never_copied_group_is_behind_since_its_first():
    prim = [snap("a1", 0), snap("b1", 1, tag="home"), snap("a2", 2)]
    lag = copy_lag(prim, [], [ETC])
    assert lag.behind_since == T0 and lag.missing == 2
    home = GroupCopy("home", timedelta(hours=2))
    both = copy_lag(prim, [], [ETC, home])
    assert both.missing == 3 and both.overdue_at == T0 + timedelta(hours=3), "the tighter limit decides"
    assert copy_lag(prim, [], []).missing == 0


def test_a_copy_of_a_copy_counts_by_its_own_id_too():
    # a snapshot copied back and forth keeps its first original; the primary's id may be the copy's id
    lag = copy_lag([snap("a1", 0)], [snap("a1", 0)], [ETC])
    assert lag.missing == 0


OUT_014 = """
snapshot 964b7c43 of [/tmp/src] at 2026-12-07 00:38:58.959075805 +0000 UTC)
  copy started, this may take a while...
[0:00] 100.00%  2 / 2 packs copied

snapshot b95311e5 saved

snapshot 4296a927 of [/tmp/src] at 2026-12-07 00:38:59.855591522 +0000 UTC)
skipping source snapshot 4296a927, was already copied to snapshot 5e5f75e7
"""

OUT_018 = """
snapshot af2307cb of [/tmp/src] at 2026-12-07 00:39:22.027982241 +0000 UTC by root@vm
  copy started, this may take a while...
[0:00] 100.00%  2 / 2 packs copied

snapshot e0f29154 saved
"""


def test_copy_output_of_both_versions():
    out = CopyOutput()
    for line in OUT_014.splitlines():
        out.feed(line)
    assert out.summary() == {"copied": 1, "already_copied": 1,
                             "copied_snapshots": [{"from": "964b7c43", "to": "b95311e5"}]}
    out = CopyOutput()
    for line in OUT_018.splitlines():
        out.feed(line)
    assert out.summary()["copied_snapshots"] == [{"from": "af2307cb", "to": "e0f29154"}]
    assert CopyOutput().summary() == {"copied": 0, "already_copied": 0, "copied_snapshots": []}
