"""The history tab: each source group's last 30 backups as small plots (duration, bytes
added, files changed, repository size) with the anomaly tell's lines drawn across the two it
judges; `a` acknowledges the host's open anomalies (after a look, the group's retention goes on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from rm_core.api import Host, SourceGroup
from rm_core.enums import JobKind
from rm_core.history import AcknowledgeBody, GroupHistory, HistoryRun
from rm_core.humanize import count
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import duration, plural, size
from rm_tui.host_tabs.base import HostTab
from rm_tui.widgets.plot import ThresholdSparkline

RUNS = 30
# (field of a run, label, the line's key in GroupHistory.lines or None, how a value reads)
MEASURES: tuple[tuple[str, str, str | None, Callable[[Any], str]], ...] = (
    ("duration", "duration", None, lambda v: duration(v)),
    ("data_added", "bytes added", "data_added", size),
    ("files_changed", "files changed", "files_changed", count),
    ("repo_size", "repo size", None, size),
)


class GroupPlots(Vertical):
    """One group's plots: a title line, then a row per measure (label, plot, latest and line)."""

    DEFAULT_CSS = """
    GroupPlots { height: auto; margin-bottom: 1; }
    GroupPlots .plot-title { height: 1; padding: 0 1; }
    GroupPlots Horizontal { height: 3; }
    GroupPlots .plot-label { width: 15; padding: 1 1 0 1; color: $text-muted; }
    GroupPlots .plot-note { width: 1fr; padding: 1 1 0 2; }
    """

    def __init__(self, group: SourceGroup, history: GroupHistory) -> None:
        super().__init__()
        self.group, self.history = group, history

    def compose(self) -> ComposeResult:
        runs = self.history.runs[-RUNS:]
        flagged = sum(1 for r in runs if r.anomaly)
        tell = "anomaly tell off" if not self.group.anomaly.enabled else (
            "learning (fewer than 3 backups)" if not self.history.lines else
            f"lines from the last {self.group.anomaly.history} backups")
        title = (f"[b]{escape(self.group.name)}[/]  [dim]tag {escape(self.group.tag)} · "
                 f"{plural(len(runs), 'backup')} · {tell}[/]")
        if flagged:
            title += f"  [bold red]{plural(flagged, 'anomaly', 'anomalies')}[/]"
        yield Static(title, classes="plot-title")
        for key, label, line_key, fmt in MEASURES:
            values = [_value(r, key) for r in runs]
            line = self.history.lines.get(line_key) if line_key else None
            with Horizontal():
                yield Static(label, classes="plot-label")
                # a size that only grows shows its growth above its smallest, not above zero
                grows = key == "repo_size" and any(values)
                base = min(v for v in values if v) * 0.98 if grows else 0.0
                yield ThresholdSparkline(values, line, base=base)
                latest = next((v for v in reversed(values) if v), None)
                note = f"last {fmt(latest)}" if latest is not None else "[dim]no backup yet[/]"
                if values and any(values):
                    note += f"  [dim]max {fmt(max(values))}[/]"
                if line is not None:
                    note += f"  [red]line {fmt(line)}[/]"
                yield Static(note, classes="plot-note")


def _value(run: HistoryRun, key: str) -> float:
    value = getattr(run, key)
    return float(value) if isinstance(value, (int, float)) else 0.0


class HistoryTab(HostTab, can_focus=True):
    MUTATING = frozenset({"acknowledge"})
    BINDINGS = [Binding("a", "acknowledge", "Acknowledge anomalies")]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        self.histories: dict[str, tuple[SourceGroup, GroupHistory]] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="history-head", classes="pane-text")
        yield VerticalScroll(id="history-plots", can_focus=False)

    def on_mount(self) -> None:
        self.render_head()
        self.load()

    def watch_host(self) -> None:
        self.render_head()

    def render_head(self) -> None:
        head = self.part("#history-head", Static)
        if head is None:
            return  # not mounted yet, or being taken down
        h = self.host
        if h.open_anomalies:
            text = (f"[bold red]{plural(h.open_anomalies, 'open anomaly', 'open anomalies')}[/]: "
                    f"{escape(h.anomaly or '')}" + ("" if self.readonly else "  [dim](a acknowledges)[/]"))
        else:
            text = "[dim]no open anomaly · the last 30 backups of each group; red bars passed the anomaly line[/]"
        head.update(text)

    def apply(self, event: m.ServerEvent) -> None:
        super().apply(event)
        if (isinstance(event, m.JobUpdated) and event.job.kind == JobKind.backup and event.job.state.terminal
                and self.loaded):
            self.load()

    @work(exclusive=True, group="history-load")
    async def load(self) -> None:
        try:
            groups = await self.client.source_groups(self.host.id)
            found = {}
            for g in groups:
                body = await self.client.request("GET", f"/hosts/{self.host.id}/source-groups/{g.id}/history",
                                                 params={"limit": str(RUNS)})
                found[g.id] = (g, GroupHistory.model_validate(body))
        except ApiError as exc:
            self.report(exc, "Cannot load backup history")
            return
        self.histories = found
        self.loaded = True
        await self.show()

    async def show(self) -> None:
        plots = self.part("#history-plots", VerticalScroll)
        if plots is None:
            return  # the load ended as the screen was being closed
        await plots.remove_children()
        if not self.histories:
            await plots.mount(Static("no source groups yet", classes="pane-text"))
            return
        await plots.mount_all([GroupPlots(g, h) for g, h in sorted(self.histories.values(),
                                                                    key=lambda gh: gh[0].name.lower())])

    def action_acknowledge(self) -> None:
        n = self.host.open_anomalies
        if not n:
            self.notify("This host has no open anomaly", severity="information")
            return
        self.ask(f"Acknowledge {plural(n, 'open anomaly', 'open anomalies')} of {self.host.hostname}? "
                 f"({self.host.anomaly}) Retention held for them resumes.", self.acknowledge, yes="Acknowledge")

    @work(group="host-save")
    async def acknowledge(self) -> None:
        try:
            body = await self.client.request("POST", f"/hosts/{self.host.id}/anomalies/acknowledge",
                                             json=AcknowledgeBody(note="acknowledged in the console").model_dump(
                                                 exclude_none=True))
        except ApiError as exc:
            self.report(exc, "Cannot acknowledge")
            return
        self.notify(f"{plural(len(body.get('anomalies', [])), 'anomaly', 'anomalies')} acknowledged")
        self.load()
