"""Forms an operator can trust: esc asks before throwing edits away, keys typed in one burst
(Tab included, as a paste or a fast typist sends them) land in the fields they were meant
for, and a checked box differs from an unchecked one by its glyph, not only by colour."""

from __future__ import annotations

from textual import events
from textual.widgets import Checkbox, Input, SelectionList, TextArea

from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import ScheduleForm, SourceGroupForm
from rm_tui.screens.snapshot_browser import RestoreDialog
from tests.conftest import wait_for
from tests.tui.helpers import SIZE, make_group, new_app, signed_in_at_host, type_text


def burst(app, keys: list[str]) -> None:
    """Keys queued at once, before the app has handled the first (tmux send-keys, a paste)."""
    for key in keys:
        char = {"space": " ", "slash": "/"}.get(key, key if len(key) == 1 else None)
        app.post_message(events.Key(key, char))


def keys_of(text: str) -> list[str]:
    return [{" ": "space", "/": "slash"}.get(ch, ch) for ch in text]


async def groups_of(server, host_id: str) -> list[dict]:
    status, body = await server.call("GET", f"/hosts/{host_id}/source-groups")
    assert status == 200, body
    return body["source_groups"]


async def test_esc_asks_before_discarding_edits_and_not_otherwise(server):
    host_id, _ = await server.enroll("web-1")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await pilot.press("2", "n")
        await wait_for(lambda: isinstance(app.screen, SourceGroupForm), what="group form")
        await pilot.press("escape")
        await wait_for(lambda: app.screen is host, what="an untouched form closes at once")

        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, SourceGroupForm), what="group form")
        form = app.screen
        await type_text(pilot, "home")
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="discard question")
        assert "Discard" in str(app.screen.question) or "discard" in str(app.screen.question)
        await pilot.press("n")  # keep editing: the form and what was typed are still there
        await wait_for(lambda: app.screen is form, what="back in the form")
        assert form.query_one("#name", Input).value == "home"
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="discard question again")
        await pilot.press("y")
        await wait_for(lambda: app.screen is host, what="form discarded")
        assert await groups_of(server, host_id) == []


async def test_a_burst_with_tab_lands_in_the_right_fields(server):
    host_id, _ = await server.enroll("web-1")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await signed_in_at_host(pilot, app, host_id)
        await pilot.press("2")
        # n opens the form; the name, Tab, the path follow before the form is even drawn
        burst(app, ["n", *keys_of("home"), "tab", *keys_of("/home")])
        await wait_for(lambda: isinstance(app.screen, SourceGroupForm) and app.screen.ready
                       and app.screen.query_one("#includes", TextArea).text == "/home", what="path typed")
        form = app.screen
        assert form.query_one("#name", Input).value == "home"
        burst(app, ["ctrl+s"])
        await wait_for(lambda: groups_of(server, host_id), what="group saved")
        (group,) = await groups_of(server, host_id)
        assert (group["name"], group["includes"]) == ("home", ["/home"])


def glyphs(widget) -> str:
    """What a box shows without colour (a terminal without colours, a screen reader, tmux capture)."""
    return widget.render().plain if hasattr(widget.render(), "plain") else str(widget.render())


async def test_checked_and_unchecked_boxes_differ_by_glyph(server):
    host_id, _ = await server.enroll("web-1")
    await make_group(server, host_id, "etc")
    await make_group(server, host_id, "home")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        host = await signed_in_at_host(pilot, app, host_id)
        await pilot.press("3", "n")
        await wait_for(lambda: isinstance(app.screen, ScheduleForm), what="schedule form")
        form = app.screen
        await pilot.pause()
        manual, enabled = form.query_one("#manual", Checkbox), form.query_one("#enabled", Checkbox)
        assert (manual.value, enabled.value) == (False, True)
        assert glyphs(manual).replace("manual", "") != glyphs(enabled).replace("enabled", "")
        assert "X" in glyphs(enabled) and "X" not in glyphs(manual)
        groups = form.query_one("#groups", SelectionList)
        groups.select(groups.get_option_at_index(0).value)
        await pilot.pause()
        lines = [groups.render_line(y).text for y in range(2)]
        assert lines[0].lstrip()[1] != lines[1].lstrip()[1], lines  # ▐X▌ etc / ▐ ▌ home
        await pilot.press("escape")
        await wait_for(lambda: not isinstance(app.screen, ScheduleForm) or isinstance(app.screen, ConfirmDialog),
                       what="form left")
        if isinstance(app.screen, ConfirmDialog):
            await pilot.press("y")

        app.push_screen(RestoreDialog("web-1", "ab" * 32, ["/etc"]))
        await wait_for(lambda: isinstance(app.screen, RestoreDialog) and app.screen.is_mounted, what="restore")
        await pilot.pause()
        verify, in_place = (app.screen.query_one(f"#{i}", Checkbox) for i in ("verify", "in-place"))
        assert verify.value and not in_place.value
        assert "X" in glyphs(verify) and "X" not in glyphs(in_place)
        assert host is not None
