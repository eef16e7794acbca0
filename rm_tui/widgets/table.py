"""A table that stays fast with 20,000 rows: Textual's Line API, nothing per row but data.

Only the rows on screen are ever rendered (`render_line`), each from a cached strip that is
dropped when its row changes (`invalidate`). The owner keeps the data (a dict, a list) and
hands down two things: the row order (`set_rows`, already sorted and filtered) and a
function that turns a key into cells (`cells_for`). Changes arriving faster than a person
reads are coalesced: `invalidate` only marks rows, a timer repaints the visible ones at
most `REPAINT_HZ` times a second. Moving the cursor repaints at once — keys never wait.

It scrolls itself (`top`, the first row shown) rather than through Textual's ScrollView:
over a thin SSH link every byte is time, and the table draws again only the lines that now
show something else (`_sync`). A ScrollView's scroll or row count change is a layout, and
a layout drew every row a second time: a filter keystroke cost two full repaints
(bench/tty_bytes.py). The scrollbar is one column drawn with the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.events import MouseScrollDown, MouseScrollUp, Resize
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

REPAINT_HZ = 4
WHEEL_ROWS = 3  # rows a mouse wheel notch scrolls
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


class ResourceTable(Widget, can_focus=True):
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
    COMPONENT_CLASSES = {"resource-table--header", "resource-table--cursor", "resource-table--marked",
                         "resource-table--thumb"}
    DEFAULT_CSS = """
    ResourceTable { height: 1fr; background: $surface; }
    ResourceTable > .resource-table--thumb { color: $panel-lighten-2; }
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
        self.top = 0  # the row shown on the first line under the header
        self._cursor_strip: tuple[Strip, Strip] | None = None  # (row strip, the same highlighted)
        self._painted: list[tuple[object, ...]] | None = None  # what each line showed when last drawn
        self.consumes_text = False  # an owner types into a box through it: printable keys are text

    def check_consume_key(self, key: str, character: str | None) -> bool:
        """While the owner takes typing through the table (the fleet's filter) printable keys
        are text: the footer leaves out their bindings, as it does for a focused Input."""
        return self.consumes_text and character is not None and character.isprintable()

    # ------------------------------------------------------------ data in

    def set_rows(self, keys: Sequence[str], keep_key: bool = True, from_top: bool = False) -> None:
        """New order (sorted, filtered) of the rows. The cursor stays on its key, on the same
        line of the screen, so rows that stay stay put; `from_top` (a filter typed) shows the
        rows from the first, the cursor on its key if that is on the first page, else on the
        first row — never an old offset that hides the first matches. Only lines that now
        show another row are drawn; rows whose content changed are the owner's to say
        (`invalidate`)."""
        current = self.cursor_key if keep_key else None
        line = self.cursor_row - self.top  # where the cursor's row is on screen
        self.keys = list(keys)
        # built when first asked for: a filter keystroke at 20,000 hosts sets new rows and
        # needs only the cursor's position, one scan in C
        self._index = None
        if self.marks:
            self.marks &= self.index.keys()
        row = _position(self.keys, current) if current is not None else None
        if from_top:
            self.top = 0
            row = row if row is not None and row < self.page_height else 0
        elif row is not None:
            self.top = row - line
        else:
            row = min(self.cursor_row, max(0, len(self.keys) - 1))
        self._move(row)

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
            self._painted = self._lines()  # what the full repaint below draws
            self.refresh()
            return
        for key in keys:
            self._cache.pop(key, None)
        self._dirty.update(keys)

    def repaint_dirty(self) -> None:
        """Repaint the visible rows that changed since the last call (the owner's timer)."""
        if not self._dirty:
            return
        top, bottom = self.top, self.top + self.page_height
        for key in self._dirty:
            i = self.index.get(key)
            if i is not None and top <= i < bottom:
                self._refresh_line(i - top + 1)
        self._dirty.clear()

    def set_width(self, key: str, width: int) -> None:
        """Widen or narrow one column (what it shows may be longer today): every row is redrawn."""
        self.columns = [Column(c.key, c.label, width) if c.key == key else c for c in self.columns]
        self.invalidate(None)

    # ------------------------------------------------------------ cursor and marks

    @property
    def row_count(self) -> int:
        return len(self.keys)

    @property
    def cursor_key(self) -> str | None:
        if not self.keys:
            return None
        return self.keys[min(self.cursor_row, len(self.keys) - 1)]

    @property
    def page_height(self) -> int:
        """Rows on screen (the header takes a line)."""
        return max(1, self.size.height - 1)

    def move_to(self, key: str) -> None:
        if key in self.index:
            self._move(self.index[key])

    def _move(self, row: int) -> None:
        """The cursor to `row`, the view following it; then the lines that changed are drawn."""
        self.cursor_row = max(0, min(row, len(self.keys) - 1)) if self.keys else 0
        height = self.page_height
        if self.cursor_row < self.top:
            self.top = self.cursor_row
        elif self.cursor_row >= self.top + height:
            self.top = self.cursor_row - height + 1
        self.top = max(0, min(self.top, len(self.keys) - height))
        self._sync()
        self.post_message(self.Highlighted(self, self.cursor_key))

    def scroll_rows(self, delta: int) -> None:
        """The view (not the cursor) by `delta` rows: the mouse wheel."""
        self.top = max(0, min(self.top + delta, len(self.keys) - self.page_height))
        self._sync()

    def on_mouse_scroll_down(self, event: MouseScrollDown) -> None:
        event.stop()
        self.scroll_rows(WHEEL_ROWS)

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        event.stop()
        self.scroll_rows(-WHEEL_ROWS)

    def _thumb(self) -> tuple[int, int] | None:
        """The scrollbar's thumb as lines [start, end) under the header; None: every row fits."""
        rows, height = len(self.keys), self.page_height
        if rows <= height:
            return None
        size = max(1, round(height * height / rows))
        start = round(self.top / (rows - height) * (height - size))
        return start, start + size

    def _lines(self) -> list[tuple[object, ...]]:
        """What each line under the header shows: its row, cursor, mark and scrollbar cell."""
        thumb, keys, cursor, marks = self._thumb(), self.keys, self.cursor_row, self.marks
        if not keys:
            return [("empty", self.empty)] + [()] * (self.page_height - 1)
        lines: list[tuple[object, ...]] = []
        for y in range(self.page_height):
            row = self.top + y
            key = keys[row] if row < len(keys) else None
            lines.append((key, row == cursor, key in marks, thumb is not None and thumb[0] <= y < thumb[1]))
        return lines

    def _refresh_line(self, y: int) -> None:
        """Draw one line of the widget (0: the header) on the next frame."""
        self.refresh(Region(0, y, self.size.width, 1))

    def _sync(self) -> None:
        """Draw again only the lines that now show something else (every byte crosses the link)."""
        lines = self._lines()
        painted, self._painted = self._painted, lines
        if painted is None or len(painted) != len(lines):
            self.refresh()
            return
        for y, (was, now) in enumerate(zip(painted, lines)):
            if was != now:
                self._refresh_line(y + 1)

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor_row + direction * max(1, self.page_height - 1))

    def action_jump(self, where: int) -> None:
        self._move(0 if where == 0 else len(self.keys) - 1)

    def toggle_mark(self, key: str | None = None) -> None:
        key = key or self.cursor_key
        if key is None:
            return
        self.marks.symmetric_difference_update({key})
        self._cache.pop(key, None)
        self._sync()

    def clear_marks(self) -> None:
        for key in self.marks:
            self._cache.pop(key, None)
        self.marks.clear()
        self._sync()

    # ------------------------------------------------------------ rendering

    def _widths(self) -> list[int]:
        fixed = sum(c.width for c in self.columns) + len(self.columns) + (2 if self.markable else 0)
        rest = max(8, self._row_width() - fixed)
        return [c.width or rest for c in self.columns]

    def _row_width(self) -> int:
        # the last column takes what is left, so a row is as wide as the widget but the scrollbar
        return max(1, self.size.width - 1)

    def on_resize(self, event: Resize) -> None:
        self._cache.clear()
        self._painted = None
        self._move(self.cursor_row)  # the view follows the cursor into the new height

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def _line(self, cells: Sequence[Cell], widths: list[int], mark: str) -> list[Segment]:
        """One row as segments, each cell cut (…) or padded to its column.

        Plain cells (a str, or a Text with one style) become one segment each without going
        through Text.render: building a row was most of a repaint when the rows on screen
        change at once (a filter keystroke, page down at 20,000 hosts). The space after a cell
        takes the cell's style, so that neighbours of one style become one segment (_strip)."""
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
            add(Segment(plain + " ", console.get_style(style) if style else None))
        return segments

    def _strip(self, segments: list[Segment], width: int, style: Style) -> Strip:
        # one Strip per row, already the widget's width: each Strip carries several caches of
        # its own, and creating them dominated a repaint when strips were padded afterwards
        line = Segment.adjust_line_length(segments, width)
        # Neighbours of one style as one segment: each segment goes to the terminal as its own
        # colour sequence and reset (~40 bytes in truecolor), and a row is 20-30 of them. Over
        # a thin link that doubled what a page of rows costs (bench/tty_bytes.py).
        return Strip(list(Segment.simplify(Segment.apply_style(line, style))), width)

    def render_line(self, y: int) -> Strip:
        width = self._row_width()
        base = self.rich_style
        if y == 0:
            header = self._line([c.label for c in self.columns], self._widths(), "  " if self.markable else "")
            style = base + self.get_component_rich_style("resource-table--header")
            return Strip.join([self._strip(header, width, style), Strip([Segment(" ", style)], 1)])
        row = self.top + y - 1
        thumb = self._thumb()
        bar = Strip([Segment("▐", base + self.get_component_rich_style("resource-table--thumb"))
                     if thumb is not None and thumb[0] <= y - 1 < thumb[1] else Segment(" ", base)], 1)
        if row >= len(self.keys):
            if row == 0:
                empty = self._strip(self._line([Text(" " + self.empty, style="dim")], [width], ""), width, base)
                return Strip.join([empty, bar])
            return Strip.join([Strip.blank(width, base), bar])
        return Strip.join([self._row_strip(row, width, base), bar])

    def _row_strip(self, row: int, width: int, base: Style) -> Strip:
        key = self.keys[row]
        strip = self._cache.get(key)
        if strip is None:
            mark = ("● " if key in self.marks else "  ") if self.markable else ""
            style = base
            if key in self.marks:
                style = base + self.get_component_rich_style("resource-table--marked")
            strip = self._strip(self._line(self.cells_for(key), self._widths(), mark), width, style)
            self._cache[key] = strip
        if row == self.cursor_row:
            cached = self._cursor_strip
            if cached is None or cached[0] is not strip:
                cursor = self.get_component_rich_style("resource-table--cursor")
                cached = (strip, Strip(list(Segment.simplify(Segment.apply_style(strip, post_style=cursor))),
                                       strip.cell_length))
                self._cursor_strip = cached
            return cached[1]
        return strip
