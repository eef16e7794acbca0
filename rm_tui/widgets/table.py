"""A table that stays fast with 20,000 rows: Textual's Line API, nothing per row but data.

Only the rows on screen are ever rendered (`render_line`), each from a cached strip that is
dropped when its row changes (`invalidate`). The owner keeps the data (a dict, a list) and
hands down two things: the row order (`set_rows`, already sorted and filtered) and a
function that turns a key into cells (`cells_for`). Changes arriving faster than a person
reads are coalesced: `invalidate` only marks rows, a timer repaints the visible ones at
most `REPAINT_HZ` times a second. Moving the cursor repaints at once — keys never wait.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

REPAINT_HZ = 4
Cell = Text | str


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # cells; 0 = whatever is left (at most one column)


def _position(keys: list[str], key: str) -> int | None:
    try:
        return keys.index(key)
    except ValueError:
        return None


class ResourceTable(ScrollView, can_focus=True):
    """Rows keyed by string ids, a sticky header, a cursor, optional marks.

    `enter` is the owner's: what it opens differs per table, and a binding here would hide the
    owner's from the footer (the focused widget's binding for a key wins)."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "Top", show=False),
        Binding("end,G", "jump(-1)", "Bottom", show=False),
    ]
    COMPONENT_CLASSES = {"resource-table--header", "resource-table--cursor", "resource-table--marked"}
    DEFAULT_CSS = """
    ResourceTable { height: 1fr; background: $surface; overflow-x: hidden; }
    ResourceTable > .resource-table--header { text-style: bold; background: $panel; color: $text; }
    ResourceTable > .resource-table--cursor { background: $block-cursor-blurred-background; }
    ResourceTable:focus > .resource-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold; }
    ResourceTable > .resource-table--marked { background: $warning 25%; }
    """

    class Highlighted(Message):
        def __init__(self, table: ResourceTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> ResourceTable:
            return self.table

    def __init__(self, columns: Sequence[Column], cells_for: Callable[[str], Sequence[Cell]],
                 *, markable: bool = False, empty: str = "nothing to show", id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.cells_for = cells_for
        self.markable = markable
        self.empty = empty
        self.keys: list[str] = []
        self._index: dict[str, int] | None = {}
        self.marks: set[str] = set()
        self._cache: dict[str, Strip] = {}
        self._dirty: set[str] = set()
        self.cursor_row = 0
        self._cursor_strip: tuple[Strip, Strip] | None = None  # (row strip, the same highlighted)

    # ------------------------------------------------------------ data in

    def set_rows(self, keys: Sequence[str], keep_key: bool = True) -> None:
        """New order (sorted, filtered) of the rows; the cursor stays on the same key."""
        current = self.cursor_key if keep_key else None
        self.keys = list(keys)
        # built when first asked for: a filter keystroke at 20,000 hosts sets new rows and
        # needs only the cursor's position, one scan in C
        self._index = None
        if self.marks:
            self.marks &= self.index.keys()
        self.virtual_size = Size(self._line_width(), len(self.keys) + 1)
        row = _position(self.keys, current) if current is not None else None
        if row is not None:
            self._move(row, scroll=True)
        else:
            self._move(min(self.cursor_row, max(0, len(self.keys) - 1)), scroll=True)
        self.refresh()

    @property
    def index(self) -> dict[str, int]:
        """Row key -> its position in the current order."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.keys)}
        return self._index

    def invalidate(self, keys: set[str] | Sequence[str] | None = None) -> None:
        """These rows changed (None: all): drop their strips, repaint the visible ones soon."""
        if keys is None:
            self._cache.clear()
            self.refresh()
            return
        for key in keys:
            self._cache.pop(key, None)
        self._dirty.update(keys)

    def repaint_dirty(self) -> None:
        """Repaint the visible rows that changed since the last call (the owner's timer)."""
        if not self._dirty:
            return
        top = int(self.scroll_offset.y)
        bottom = top + self.size.height
        for key in self._dirty:
            i = self.index.get(key)
            if i is not None and top <= i < bottom:
                self.refresh_lines(i + 1)
        self._dirty.clear()

    def set_width(self, key: str, width: int) -> None:
        """Widen or narrow one column (what it shows may be longer today): every row is redrawn."""
        self.columns = [Column(c.key, c.label, width) if c.key == key else c for c in self.columns]
        self._cache.clear()
        self.refresh()

    # ------------------------------------------------------------ cursor and marks

    @property
    def row_count(self) -> int:
        return len(self.keys)

    @property
    def cursor_key(self) -> str | None:
        if not self.keys:
            return None
        return self.keys[min(self.cursor_row, len(self.keys) - 1)]

    def move_to(self, key: str) -> None:
        if key in self.index:
            self._move(self.index[key], scroll=True)

    def _move(self, row: int, scroll: bool = True) -> None:
        row = max(0, min(row, len(self.keys) - 1)) if self.keys else 0
        old = self.cursor_row
        self.cursor_row = row
        if old != row:
            self.refresh_lines(old + 1)
        self.refresh_lines(row + 1)
        if scroll and self.keys:
            self._scroll_to_cursor()
        self.post_message(self.Highlighted(self, self.cursor_key))

    def _scroll_to_cursor(self) -> None:
        height = max(1, self.size.height - 1)  # the header takes a line
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        self._move(0 if where == 0 else len(self.keys) - 1)

    def toggle_mark(self, key: str | None = None) -> None:
        key = key or self.cursor_key
        if key is None:
            return
        self.marks.symmetric_difference_update({key})
        self._cache.pop(key, None)
        self.refresh_lines(self.index[key] + 1)

    def clear_marks(self) -> None:
        for key in self.marks:
            self._cache.pop(key, None)
        self.marks.clear()
        self.refresh()

    # ------------------------------------------------------------ rendering

    def _widths(self) -> list[int]:
        fixed = sum(c.width for c in self.columns) + len(self.columns) + (2 if self.markable else 0)
        rest = max(8, self.size.width - fixed)
        return [c.width or rest for c in self.columns]

    def _line_width(self) -> int:
        # the last column takes what is left, so a line is as wide as the widget: no x scroll
        return self.size.width

    def on_resize(self) -> None:
        self._cache.clear()
        self.virtual_size = Size(self._line_width(), len(self.keys) + 1)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def _line(self, cells: Sequence[Cell], widths: list[int], mark: str) -> list[Segment]:
        """One row as segments, each cell cut (…) or padded to its column.

        Plain cells (a str, or a Text with one style) become one segment each without going
        through Text.render: building a row was most of a repaint when the rows on screen
        change at once (a filter keystroke, page down at 20,000 hosts)."""
        console = self.app.console
        segments = [Segment(mark)] if mark else []
        add = segments.append
        for cell, width in zip(cells, widths):
            if isinstance(cell, Text):
                plain, style = cell.plain, cell.style
                if cell.spans or "\t" in plain or "\n" in plain:
                    text = cell.copy()
                    text.end = ""
                    text.truncate(width, overflow="ellipsis", pad=True)
                    segments.extend(text.render(console))
                    add(Segment(" "))
                    continue
            else:
                plain, style = str(cell), None
            length = cell_len(plain)
            if length > width:
                plain = set_cell_size(plain, width - 1) + "…" if width > 1 else set_cell_size(plain, width)
            elif length < width:
                plain += " " * (width - length)
            add(Segment(plain, console.get_style(style) if style else None))
            add(Segment(" "))
        return segments

    def _strip(self, segments: list[Segment], width: int, style: Style) -> Strip:
        # one Strip per row, already the widget's width: each Strip carries several caches of
        # its own, and creating them dominated a repaint when strips were padded afterwards
        line = Segment.adjust_line_length(segments, width)
        return Strip(list(Segment.apply_style(line, style)), width)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        widths = self._widths()
        base = self.rich_style
        if y == 0:
            header = self._line([c.label for c in self.columns], widths, "  " if self.markable else "")
            return self._strip(header, width, base + self.get_component_rich_style("resource-table--header"))
        row = int(self.scroll_offset.y) + y - 1
        if row >= len(self.keys):
            if row == 0:
                return self._strip(self._line([Text(" " + self.empty, style="dim")], [width], ""), width, base)
            return Strip.blank(width, base)
        key = self.keys[row]
        strip = self._cache.get(key)
        if strip is None:
            mark = ("● " if key in self.marks else "  ") if self.markable else ""
            style = base
            if key in self.marks:
                style = base + self.get_component_rich_style("resource-table--marked")
            strip = self._strip(self._line(self.cells_for(key), widths, mark), width, style)
            self._cache[key] = strip
        if row == self.cursor_row:
            cached = self._cursor_strip
            if cached is None or cached[0] is not strip:
                cursor = self.get_component_rich_style("resource-table--cursor")
                cached = (strip, Strip(list(Segment.apply_style(strip, post_style=cursor)), strip.cell_length))
                self._cursor_strip = cached
            return cached[1]
        return strip
