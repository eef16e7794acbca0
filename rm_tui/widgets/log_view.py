"""A job log that stays smooth at 100,000 lines: Line API, lines formatted only when shown.

The owner appends `JobLogLine`s; a search keeps the indices of matching lines (one pass
over plain strings, no widgets rebuilt) and only those are shown, the match highlighted.
`follow` keeps the view at the newest line as lines arrive."""

from __future__ import annotations

from collections.abc import Iterable

from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from rm_core.jobs import JobLogLine


class LogView(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown,space", "page_down", "Page down", show=False),
    ]
    DEFAULT_CSS = "LogView { height: 1fr; background: $surface; }"

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[JobLogLine] = []
        self._lower: list[str] = []
        self.search = ""
        self.shown: list[int] | None = None  # indices matching the search; None: every line
        self.follow = True
        self._width = 0  # widest line seen: the horizontal scroll range

    @property
    def shown_count(self) -> int:
        return len(self.lines) if self.shown is None else len(self.shown)

    def append(self, lines: Iterable[JobLogLine]) -> None:
        for line in lines:
            self.lines.append(line)
            low = line.text.lower()
            self._lower.append(low)
            self._width = max(self._width, len(line.text) + 9)
            if self.shown is not None and self.search in low:
                self.shown.append(len(self.lines) - 1)
        self._resize()

    def set_search(self, text: str) -> None:
        self.search = text.strip().lower()
        self.shown = None if not self.search else [i for i, low in enumerate(self._lower) if self.search in low]
        self._resize()
        self.refresh()

    def _resize(self) -> None:
        self.virtual_size = Size(max(self._width, self.size.width), self.shown_count)
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self.refresh()

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_offset.y) + y
        width = self.size.width
        base = self.rich_style
        if row >= self.shown_count:
            return Strip.blank(width, base)
        line = self.lines[row if self.shown is None else self.shown[row]]
        text = Text(line.ts.astimezone().strftime("%H:%M:%S "), style="dim", no_wrap=True, end="")
        body = Text(line.text, style="red" if line.stream == "stderr" else "")
        if self.search:
            body.highlight_words([self.search], style="reverse yellow", case_sensitive=False)
        text.append_text(body)
        segments = list(Segment.apply_style(text.render(self.app.console), base))
        strip = Strip(segments, text.cell_len)
        x = int(self.scroll_offset.x)
        return strip.crop_extend(x, x + width, base)

    def action_scroll_up(self) -> None:
        self.follow = False
        self.scroll_relative(y=-1, animate=False)

    def action_scroll_down(self) -> None:
        self.scroll_relative(y=1, animate=False)

    def top(self) -> None:
        self.follow = False
        self.scroll_home(animate=False)

    def bottom(self) -> None:
        self.follow = True
        self.scroll_end(animate=False)
