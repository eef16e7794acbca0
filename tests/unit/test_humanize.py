"""rm_core.humanize: sizes, durations, counts and restic's numbers as a person reads them."""

from __future__ import annotations

import pytest

from rm_core import humanize as H


@pytest.mark.parametrize("n,text", [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (127800, "125 KiB"),
    (377507347, "360 MiB"), (1288490188, "1.2 GiB"), (1024 ** 2 - 1, "1.0 MiB"), (10 * 1024 ** 4, "10 TiB"),
    (None, "?"),
])
def test_size(n, text) -> None:
    assert H.size(n) == text


@pytest.mark.parametrize("s,text", [
    (0, "0s"), (2, "2s"), (1.678579412, "1.7s"), (42.4, "42s"), (59.6, "1m00s"), (190, "3m10s"),
    (7500, "2h05m"), (97200, "1d03h"), (None, "?"), (-3, "0s"),
])
def test_duration(s, text) -> None:
    assert H.duration(s) == text


def test_counts_plurals_rates_ids() -> None:
    assert H.count(12345) == "12,345"
    assert H.plural(1, "host") == "1 host" and H.plural(20000, "host") == "20,000 hosts"
    assert H.plural(2, "entry", "entries") == "2 entries"
    assert H.rate(45 * 1024 ** 2) == "45 MiB/s"
    assert H.short_id("fcfb0a12" + "0" * 56) == "fcfb0a12"


def test_backup_progress_from_sparse_status() -> None:
    line = H.backup_progress(percent=43.96, files_done=8444, files_total=20000, bytes_done=56185,
                             bytes_total=127800, eta_seconds=2, elapsed_seconds=1)
    assert line == "43% · 8,444 / 20,000 files · 55 KiB / 125 KiB · 55 KiB/s · ETA 2s"
    # restic sends only percent_done for sure; a finished percentage has no ETA
    assert H.backup_progress(percent=0) == "0%"
    assert H.backup_progress(percent=100, bytes_done=10, bytes_total=10, eta_seconds=0) == "100% · 10 B / 10 B"
    assert H.backup_progress() == "backup running"


def test_backup_summary_in_human_units() -> None:
    summary = {"files_new": 20000, "files_changed": 0, "files_unmodified": 3, "data_added": 377507347,
               "total_files_processed": 20003, "total_bytes_processed": 1288490188,
               "total_duration": 1.678579412, "snapshot_id": "fcfb0a12" + "ab" * 28}
    line = H.backup_summary(summary)
    assert line == ("snapshot fcfb0a12 saved · 20,003 files: 20,000 new, 0 changed, 3 unmodified · "
                    "1.2 GiB processed in 1.7s · 360 MiB added to the repository")
    assert "=" not in line and "data_added" not in line
    assert H.backup_summary({}) == "backup finished"
