"""The history tab's plots pinned as a picture: thirty backups of a group, one an attack past
the anomaly line (bars in red over the dashed line), the repository growing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from textual.app import App, ComposeResult

from rm_core.api import SourceGroup
from rm_core.history import GroupHistory, HistoryRun
from rm_tui.widgets.plot import ThresholdBars

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
MiB = 1 << 20


def history() -> GroupHistory:
    runs = []
    for i in range(30):
        attack = i == 24
        runs.append(HistoryRun(
            job_id=f"job{i:02d}", finished_at=T0 + timedelta(days=i), state="warning" if attack else "succeeded",
            duration=40.0 + (i * 7) % 13 + (300 if attack else 0), data_added=(9 << 30) if attack else (40 + i % 7) * MiB,
            files_changed=29_000 if attack else 90 + (i * 11) % 50, total_files=30_000,
            repo_size=(10 << 30) + i * 60 * MiB + ((9 << 30) if i >= 24 else 0),
            anomaly="29,000 files changed; usual 93–136" if attack else None))
    return GroupHistory(source_group_id="g1", runs=runs, lines={"files_changed": 735.0, "data_added": 524288000.0})


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        from rm_tui.host_tabs.history import GroupPlots

        group = SourceGroup(id="g1", host_id="h1", name="etc", includes=["/etc"], excludes=[], tag="etc",
                            retention={"keep_last": 7})
        yield GroupPlots(group, history())


def test_group_plots(snap_compare):
    assert snap_compare(PlotApp(), terminal_size=(100, 18))


def test_bars_scale_from_zero_and_the_line_is_drawn():
    from rich.console import Console
    from rich.style import Style

    console = Console(width=20, record=True, color_system=None)
    console.print(ThresholdBars([1, 2, 3, 10], 6, 4, 3, Style(), Style(), Style()))
    rows = console.export_text().splitlines()
    # scaled to the line (6 at three quarters: 24 levels up to 8): the line in the top row where
    # the bars do not reach, the bar past it drawn to the top
    assert rows == ["╌╌╌█", "  ▁█", "▃▆██"], rows
    console = Console(width=20, record=True, color_system=None)
    console.print(ThresholdBars([10, 11, 12], None, 3, 1, Style(), Style(), Style(), base=9))
    assert console.export_text().splitlines() == ["▃▅█"], "a growing size above its base"
    console = Console(width=20, record=True, color_system=None)
    console.print(ThresholdBars([], None, 3, 1, Style(), Style(), Style()))
    assert console.export_text().splitlines() == ["   "]
