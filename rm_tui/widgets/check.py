"""Boxes whose state shows in the glyph, not only in the colour: `▐X▌` checked, `▐ ▌` not.

Textual draws the same `X` in both states and tells them apart by colour alone, which a
terminal without colours, a colour-blind operator or a screen capture cannot see."""

from __future__ import annotations

from rich.segment import Segment
from textual.content import Content
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList

CHECKED, UNCHECKED = "X", " "


class Check(Checkbox):
    """A checkbox with its label; `space`/`enter` toggle it."""

    def render(self) -> Content:
        self.BUTTON_INNER = CHECKED if self.value else UNCHECKED
        return super().render()


class CheckList(SelectionList[str]):
    """A list of choices, each with a box; `space` toggles the highlighted one."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        index = int(self.scroll_offset.y) + y
        if index >= self.option_count:
            return strip
        chosen = self.get_option_at_index(index).value in self.selected
        segments = list(strip)
        if len(segments) > 1 and segments[1].text == Checkbox.BUTTON_INNER:
            # [left side, inner glyph, right side, space, prompt…]: only the glyph changes
            segments[1] = Segment(CHECKED if chosen else UNCHECKED, segments[1].style, segments[1].control)
        return Strip(segments, strip.cell_length)
