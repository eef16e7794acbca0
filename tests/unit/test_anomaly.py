"""The anomaly tell's rules as tables: when a backup is outside its group's history, what the
reason says, and what it never flags."""

from __future__ import annotations

import pytest

from rm_core.anomaly import MIN_HISTORY, AnomalyPolicy, Run, judge, lines

POLICY = AnomalyPolicy()
MiB = 1 << 20


def calm(n: int = 20, changed: int = 100, added: int = 50 * MiB, total: int = 30_000) -> list[Run]:
    """A steady history: 80-140 files changed, 40-60 MiB added, ~30,000 files."""
    return [Run(changed - 20 + (i * 7) % 41, added - 10 * MiB + (i * 3 * MiB) % (20 * MiB), total + i)
            for i in range(n)]


def test_the_reason_a_person_reads():
    history = calm()
    changed = sorted(r.files_changed for r in history)
    low, high = changed[2], changed[17]  # 10th and 90th percentile of 20 runs (nearest rank)
    v = judge(Run(41_203, 60 * MiB, 30_010), history, POLICY)
    assert v is not None and v.measure == "files_changed"
    assert v.reason == f"41,203 files changed; usual {low}–{high}", v.reason
    assert v.details()["usual_low"] == low and v.details()["value"] == 41_203


@pytest.mark.parametrize("run", [
    Run(100, 50 * MiB, 30_000),  # a usual day
    Run(450, 200 * MiB, 30_300),  # four times the usual: still inside (ratio 5, floor 200 files)
    Run(130, 580 * MiB, 30_000),  # eleven times the bytes: bytes are the noisier measure (ratio 12)
    Run(90, 40 * MiB, 22_000),  # a quarter of the files cleaned up (removed_share 0.3)
])
def test_usual_and_nearly_usual_runs_are_not_flagged(run):
    assert judge(run, calm(), POLICY) is None


def test_bytes_and_removal_are_measures_of_their_own():
    v = judge(Run(120, 40 << 30, 30_000), calm(), POLICY)
    assert v is not None and v.measure == "data_added" and v.reason.startswith("40 GiB added; usual "), v
    v = judge(Run(80, 30 * MiB, 9_000), calm(), POLICY)
    assert v is not None and v.measure == "files_removed", v
    assert v.reason.startswith("70% of files gone (9,000 seen; usual 30,00"), v.reason


def test_the_measure_furthest_past_its_line_speaks():
    # encryption: every file changed and every byte new; the files are further past their line
    v = judge(Run(30_000, 3 << 30, 30_000), calm(), POLICY)
    assert v is not None and v.measure == "files_changed"


def test_no_verdict_before_three_runs_or_with_the_tell_off():
    history = calm(MIN_HISTORY - 1)
    assert judge(Run(30_000, 30 << 30, 30_000), history, POLICY) is None
    assert lines(history, POLICY) == {}
    assert judge(Run(30_000, 30 << 30, 30_000), calm(), AnomalyPolicy(enabled=False)) is None
    assert judge(Run(30_000, 30 << 30, 30_000), calm(MIN_HISTORY), POLICY) is not None


def test_only_the_policys_history_is_read():
    # newest first: ten calm runs, then an old era of huge runs the window no longer reaches
    history = calm(10) + [Run(50_000, 10 << 30, 30_000)] * 30
    assert judge(Run(20_000, 60 * MiB, 30_000), history, AnomalyPolicy(history=10)) is not None
    assert judge(Run(20_000, 60 * MiB, 30_000), history, AnomalyPolicy(history=40)) is None


def test_a_history_of_identical_runs_is_not_infinitely_strict():
    same = [Run(100, 10 * MiB, 5_000)] * 10
    assert judge(Run(101, 10 * MiB + 1, 5_000), same, POLICY) is None
    assert judge(Run(400, 30 * MiB, 5_000), same, POLICY) is None
    assert judge(Run(5_000, 10 * MiB, 5_000), same, POLICY) is not None


def test_small_groups_floor_and_its_cap():
    # a group of 300 files that changes 3 a day: 150 encrypted files is half of it — news,
    # though below min_files (the floor is at most a fifth of the group's files)
    tiny = [Run(3, 100_000, 300)] * 10
    assert judge(Run(150, 5 * MiB, 300), tiny, POLICY) is not None
    assert judge(Run(40, 1 * MiB, 300), tiny, POLICY) is None
    # a big calm group: 150 changed files where 2 are usual is below min_files
    big = [Run(2, 100_000, 100_000)] * 10
    assert judge(Run(150, 5 * MiB, 100_000), big, POLICY) is None


def test_sensitivity_moves_the_line():
    history = calm()
    strict, loose = AnomalyPolicy(sensitivity=1, min_files=0), AnomalyPolicy(sensitivity=100)
    assert lines(history, strict)["files_changed"].threshold < lines(history, loose)["files_changed"].threshold


@pytest.mark.parametrize("summary,expected", [
    ({"files_new": 3, "files_changed": 4, "data_added": 10, "total_files_processed": 99}, Run(7, 10, 99)),
    ({"files_new": None, "files_changed": 0, "data_added": 0, "total_files_processed": 5}, Run(0, 0, 5)),
    ({}, None), (None, None), ({"drill": 1}, None), ({"files_new": "x", "total_files_processed": 1}, None),
])
def test_runs_from_restic_summaries(summary, expected):
    assert Run.of(summary) == expected


def test_policy_bounds_name_the_field():
    with pytest.raises(ValueError, match="history"):
        AnomalyPolicy(history=2)
    with pytest.raises(ValueError, match="removed_share"):
        AnomalyPolicy(removed_share=0)
