"""Textual's Sparkline, with the line a value must not pass drawn across it: the anomaly
tell's threshold over a group's last backups (the History tab).

With a line, the plot is scaled to it: the line stands at three quarters of the height, the
usual bars show their shape below it, and a bar over the line is over it on screen too, in red
(one far over it is drawn to the top). Without a line, bars scale from `base` (0, or the
smallest value for a size that only grows) to the highest. One column per backup, the newest
on the right."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.app import RenderResult as WidgetRender
from textual.widgets import Sparkline

BARS = " ▁▂▃▄▅▆▇█"
LINE = "╌"


class ThresholdBars:
    """The renderable: `values` as bars `height` rows tall, `line` drawn where it falls."""

    def __init__(self, values: Sequence[float], line: float | None, width: int, height: int,
                 bar: Style, over: Style, rule: Style, base: float = 0.0) -> None:
        self.values = list(values)[-width:] if width > 0 else []
        self.line, self.width, self.height = line, width, max(1, height)
        self.bar, self.over, self.rule = bar, over, rule
        self.base = base

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        levels = self.height * 8
        top = self.line * 4 / 3 if self.line else max([*self.values, 0.0])
        span = (top - self.base) or 1.0
        bars = [min(levels, round((v - self.base) / span * levels)) if v > self.base else 0 for v in self.values]
        bars = [max(1, b) if v > self.base else 0 for b, v in zip(bars, self.values)]  # anything above shows
        line_level = round((self.line - self.base) / span * levels) if self.line else None
        pad = self.width - len(bars)
        for row in reversed(range(self.height)):
            low = row * 8
            line_here = line_level is not None and low < line_level <= low + 8
            if pad > 0:
                yield Segment((LINE if line_here else " ") * pad, self.rule if line_here else None)
            for value, level in zip(self.values, bars):
                style = self.over if self.line is not None and value > self.line else self.bar
                if level >= low + 8:
                    yield Segment("█", style)
                elif level > low:
                    yield Segment(BARS[level - low], style)
                elif line_here:
                    yield Segment(LINE, self.rule)
                else:
                    yield Segment(" ")
            if row:
                yield Segment.line()


class ThresholdSparkline(Sparkline):
    """A Sparkline (data, the min/max colour classes) with a threshold line: `line`."""

    DEFAULT_CSS = """
    ThresholdSparkline { height: 3; width: 32; }
    ThresholdSparkline > .sparkline--max-color { color: $error; }
    ThresholdSparkline > .sparkline--min-color { color: $primary; }
    """

    def __init__(self, data: Sequence[float] | None = None, line: float | None = None, *, base: float = 0.0,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(data, id=id, classes=classes)
        self.line = line
        self.base = base

    def set_plot(self, data: Sequence[float], line: float | None) -> None:
        self.line = line
        self.data = list(data)  # the reactive: repaints
        self.refresh()

    def render(self) -> WidgetRender:
        _, base = self.background_colors
        bar = base + self.get_component_styles("sparkline--min-color").color
        over = base + self.get_component_styles("sparkline--max-color").color
        return ThresholdBars(self.data or [], self.line, self.size.width, self.size.height,
                             Style(color=bar.rich_color), Style(color=over.rich_color, bold=True),
                             Style(color=over.rich_color, dim=True), self.base)
