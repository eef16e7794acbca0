"""The fleet's repository growth: each host's repository size over the last 30 days as a
small plot, fastest growing first (GET /api/v1/fleet/growth)."""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Static

from rm_core.history import FleetGrowth, HostGrowth
from rm_tui.client import ApiError
from rm_tui.format import size
from rm_tui.screens.base import ApiScreen
from rm_tui.widgets.plot import ThresholdSparkline

DAYS = 30
HOSTS = 100


def growth_text(h: HostGrowth) -> str:
    grown = h.growth or 0
    share = f" ({grown / h.size_before:+.0%})" if h.size_before else ""
    style = "yellow" if grown > 0 else "dim"
    return f"{size(h.size)}  [{style}]{'+' if grown >= 0 else '-'}{size(abs(grown))}{share}[/]"


class GrowthScreen(ApiScreen):
    DEFAULT_CSS = """
    GrowthScreen #growth-head { height: 1; padding: 0 1; }
    GrowthScreen .growth-row { height: 2; }
    GrowthScreen .growth-host { width: 28; padding: 0 1; }
    GrowthScreen ThresholdSparkline { height: 2; width: 32; }
    GrowthScreen .growth-size { width: 1fr; padding: 0 2; }
    """
    BINDINGS = [Binding("escape", "back", "Back"), Binding("ctrl+r", "reload", "Reload", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.growth: FleetGrowth | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="growth-head")
        yield VerticalScroll(id="growth-rows")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Repository growth"
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="growth-load")
    async def load(self) -> None:
        try:
            body = await self.client.request("GET", "/fleet/growth", params={"days": str(DAYS), "limit": str(HOSTS)})
        except ApiError as exc:
            self.report(exc, "Cannot load repository growth")
            return
        self.growth = FleetGrowth.model_validate(body)
        rows = self.query_one("#growth-rows", VerticalScroll)
        await rows.remove_children()
        hosts = self.growth.hosts
        self.query_one("#growth-head", Static).update(
            f"[b]{len(hosts)}[/] host(s) with reported sizes, fastest growing first · the last {DAYS} days"
            if hosts else "no repository sizes reported yet (agents report them after each backup)")
        await rows.mount_all([self._row(h) for h in hosts])

    @staticmethod
    def _row(h: HostGrowth) -> Horizontal:
        points = [float(p) for p in h.points]
        base = min(points) * 0.98 if points else 0.0
        return Horizontal(Static(escape(h.hostname), classes="growth-host"), ThresholdSparkline(points, None, base=base),
                          Static(growth_text(h), classes="growth-size"), classes="growth-row")
