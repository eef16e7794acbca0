"""Browse → mark → restore → live log, through the console against a real server, a real
agent and real restic."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Checkbox, DataTable, Input, Label

from rm_tui.screens.job_log import JobLogScreen
from rm_tui.screens.snapshot_browser import RestoreDialog, SnapshotBrowser, default_target
from tests.agent.conftest import RESTIC
from tests.agent.test_restic_versions import Restic
from tests.agent.test_restore_drills import PW_B, backup, make_source, start_agent
from tests.conftest import wait_for
from tests.tui.helpers import SIZE, new_app, quick_sign_in


def to_row(screen: SnapshotBrowser, key: str) -> None:
    table = screen.query_one("#entries", DataTable)
    table.move_cursor(row=table.get_row_index(key))


async def test_browse_mark_restore_and_follow_the_log(server, tmp_path: Path) -> None:
    restic = Restic(RESTIC, (0, 14, 0))
    host_id, run, _ = await start_agent(server, tmp_path, "web-1", tmp_path / "repo", PW_B, restic)
    try:
        src = make_source(tmp_path / "src")
        _, snap = await backup(server, host_id, src)
        app = new_app(server)
        async with app.run_test(size=SIZE) as pilot:
            await quick_sign_in(pilot, app)
            app.push_screen(SnapshotBrowser(host_id, "web-1", snap, str(src)))
            await wait_for(lambda: isinstance(app.screen, SnapshotBrowser) and app.screen.loads >= 1, what="listing")
            screen = app.screen
            assert [e.name for e in screen.entries] == ["etc", "var"]

            # Into var from its row (the third, under ".." and etc): the cursor goes to var's first
            # entry, not to the third row again (space would have marked the wrong entry)
            to_row(screen, str(src / "var"))
            await pilot.press("enter")
            await wait_for(lambda: screen.path == str(src / "var"), what="var listed")
            first, second = (str(src / "var" / e.name) for e in screen.entries[:2])
            assert screen.current()[0] == first
            await pilot.press("j")  # j/k move like every other list
            assert screen.current()[0] == second
            await pilot.press("k")
            assert screen.current()[0] == first
            await pilot.press("backspace")  # up: the cursor on the directory just left
            await wait_for(lambda: screen.path == str(src), what="back up")
            assert screen.current()[0] == str(src / "var")
            loads = screen.loads

            to_row(screen, str(src / "etc"))
            await pilot.press("enter")  # into etc
            await wait_for(lambda: screen.loads >= loads + 1 and screen.path == str(src / "etc"), what="etc listed")
            assert {e.name for e in screen.entries} == {"hosts", "we[ir]d*dir"}
            to_row(screen, str(src / "etc" / "hosts"))
            await pilot.press("space")  # mark a file
            await pilot.press("backspace")  # up again
            await wait_for(lambda: screen.loads >= loads + 2 and screen.path == str(src), what="back up")
            to_row(screen, str(src / "var"))
            await pilot.press("space")  # mark a directory
            assert screen.marked == {str(src / "etc" / "hosts"), str(src / "var")}

            await pilot.press("r")
            await wait_for(lambda: isinstance(app.screen, RestoreDialog), what="restore dialog")
            dialog = app.screen
            assert dialog.query_one("#target", Input).value.startswith(f"/var/lib/restic-manager/restore/restore-{snap[:8]}-")
            # over the original files only with the host's name typed
            dialog.query_one("#in-place", Checkbox).value = True
            await pilot.pause()
            await pilot.click("#go")
            assert "type the host name" in str(dialog.query_one("#restore-problem", Label).render())
            assert isinstance(app.screen, RestoreDialog)
            dialog.query_one("#in-place", Checkbox).value = False
            await pilot.pause()
            target = tmp_path / "restored"
            dialog.query_one("#target", Input).value = str(target)
            dialog.query_one("#target", Input).focus()
            await pilot.press("enter")

            # the job's live log opens at once and follows the restore to its end
            await wait_for(lambda: isinstance(app.screen, JobLogScreen), what="job log")
            log_screen = app.screen
            assert log_screen.job.kind.value == "restore"
            await wait_for(lambda: log_screen.job.state.value == "succeeded", 60, what="restore finished in the log")
            await wait_for(lambda: log_screen.lines, what="log lines")
        back = target / str(src).lstrip("/")
        assert (back / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
        assert (back / "var" / "log29").read_bytes() == (src / "var" / "log29").read_bytes()
        assert not (back / "etc" / "we[ir]d*dir").exists()
    finally:
        await run.close()


def test_default_target_is_fresh():
    from datetime import datetime

    assert (default_target("0123abcd" * 8, datetime(2026, 11, 29, 10, 5, 7))
            == "/var/lib/restic-manager/restore/restore-0123abcd-20261129-100507")
