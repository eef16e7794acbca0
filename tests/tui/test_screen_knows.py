"""The console shows what it knows: a snapshot's data added and size on restic 0.14 (whose
`snapshots --json` has no summary; the backup that made it said them), the files of the
newest snapshot in settings (restic's raw-data stats count none), "host offline" in the
browser's table, a cancelled job at once. Real server, real agent, real restic."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from rm_agent.agent import Agent
from rm_agent.config import load_config
from rm_tui.format import size
from rm_tui.screens.snapshot_browser import SnapshotBrowser
from rm_tui.widgets.table import ResourceTable
from tests.agent.conftest import restic_cli
from tests.agent.test_agent_server import AgentClock, Running, host_state, job_done
from tests.agent.test_restore_drills import PW_B, backup, make_source, start_agent
from tests.conftest import Server, wait_for
from tests.tui.helpers import SIZE, cell, new_app, open_host, quick_sign_in
from tests.tui.test_repo_keys import RESTIC_014


async def snapshot_count(server: Server, host_id: str, n: int) -> bool:
    _, body = await server.call("GET", f"/hosts/{host_id}/snapshots")
    return len(body["snapshots"]) == n


async def test_added_size_and_files_on_restic_014(server: Server, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    host_id, run, _ = await start_agent(server, tmp_path, "web-1", repo, PW_B, RESTIC_014)
    try:
        src = make_source(tmp_path / "src")
        # a snapshot the server ran no job for (made by hand, or before the agent came)
        restic_cli(str(repo), tmp_path, "backup", str(src / "etc"), password=PW_B)
        group, _ = await backup(server, host_id, src)
        (src / "var" / "new").write_bytes(b"x" * 50_000)
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        assert status == 202, body
        second = await wait_for(lambda: job_done(server, body["id"]), 60, "second backup")
        assert second["state"] == "succeeded", second
        await wait_for(lambda: snapshot_count(server, host_id, 3), 30, "three snapshots reported")
        summary = second["summary"]

        # the API carries it: the backup's summary on its snapshot
        _, listed = await server.call("GET", f"/hosts/{host_id}/snapshots")
        newest = listed["snapshots"][0]
        assert newest["id"].startswith(summary["snapshot_id"])
        assert newest["summary"]["data_added"] == summary["data_added"], newest
        assert listed["snapshots"][2]["summary"] is None, "made by hand: nothing known"

        app = new_app(server)
        async with app.run_test(size=SIZE) as pilot:
            fleet = await quick_sign_in(pilot, app)
            host = await open_host(pilot, app, fleet, host_id)
            await pilot.press("5")
            await wait_for(lambda: host.settings_loaded, what="snapshots and settings loaded")
            table = host.query_one("#snapshots-table", ResourceTable)
            ids = table.keys
            assert cell(table, ids[0], "added") == size(summary["data_added"])
            assert cell(table, ids[0], "total") == size(summary["total_bytes_processed"])
            assert cell(table, ids[2], "added") == "n/a" and cell(table, ids[2], "total") == "n/a"
            hint = str(host.query_one("#snapshots-hint").render())
            assert "n/a on restic 0.14" in hint, hint

            await pilot.press("7")
            text = str(host.query_one("#settings-text").render())
            assert "files 0" not in " ".join(text.split()), text
            files = f"{summary['total_files_processed']:,} in the newest snapshot"
            assert files in text, text
    finally:
        await run.close()


async def test_browsing_an_offline_host_says_so_in_the_table(server: Server, tmp_path: Path) -> None:
    host_id, run, agent_dir = await start_agent(server, tmp_path, "web-1", tmp_path / "repo", PW_B, RESTIC_014)
    src = make_source(tmp_path / "src")
    try:
        _, snap = await backup(server, host_id, src)
    finally:
        await run.close()
    await wait_for(lambda: host_state(server, host_id, "offline"), 15, "host offline")

    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app)
        app.push_screen(SnapshotBrowser(host_id, "web-1", snap, str(src)))
        await wait_for(lambda: isinstance(app.screen, SnapshotBrowser) and app.screen.problem, what="refusal")
        browser = app.screen
        table = browser.query_one("#entries", DataTable)
        shown = [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
        assert len(shown) == 1 and "host offline" in shown[0], shown  # there once the toast has gone
        assert "web-1" in str(browser.query_one("#browse-path").render())
        await pilot.press("enter", "space", "r")  # the message row is no entry: nothing to open or mark
        assert browser.marked == set() and app.screen is browser

        agent = Agent(load_config(agent_dir / "agent.json"), agent_dir / "agent.json", clock=AgentClock(),
                      hostname="web-1")
        run = Running(agent)
        try:
            await wait_for(lambda: host_state(server, host_id, "online"), 15, "host back")
            await pilot.press("ctrl+r")  # try again
            await wait_for(lambda: browser.loads >= 1, 30, "listing once the host is back")
            assert browser.problem is None
            assert [e.name for e in browser.entries] == ["etc", "var"]
        finally:
            await run.close()
