"""The console shows what it knows: a snapshot's data added and size on restic 0.14 (whose
`snapshots --json` has no summary; the backup that made it said them), the files of the
newest snapshot in settings (restic's raw-data stats count none), "host offline" in the
browser's table, a cancelled job at once. Real server, real agent, real restic."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import DataTable

from rm_agent.agent import Agent
from rm_agent.config import AgentConfig, load_config, save_config
from rm_core.enums import JobState
from rm_tui.format import size
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.job_log import JobLogScreen
from rm_tui.screens.snapshot_browser import SnapshotBrowser
from rm_tui.widgets.table import ResourceTable
from tests.agent.conftest import restic_cli
from tests.agent.test_agent_server import AgentClock, Running, host_state, job_done
from tests.agent.test_restore_drills import PW_B, backup, init_done, make_source, start_agent
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


async def test_a_cancel_shows_at_once_not_running_with_a_frozen_bar(server: Server, tmp_path: Path) -> None:
    """restic ends the uploads in flight before it exits on SIGINT: under an upload limit that
    takes longer than the agent's grace, after which it is killed. Meanwhile the job was
    `running` with a bar that no longer moved; now every console says the cancel is under way."""
    host_id, token = await server.enroll("web-1")
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", json={"url": str(tmp_path / "repo"),
                                                                           "password": PW_B})
    assert status == 200, body
    cfg = tmp_path / "agent" / "agent.json"
    save_config(cfg, AgentConfig(server_url=server.url, host_id=host_id, agent_token=token, cancel_grace_seconds=6))
    agent = Agent(load_config(cfg), cfg, clock=AgentClock(), hostname="web-1")
    agent.first_connect_grace = 0.5
    run = Running(agent)
    try:
        await wait_for(lambda: init_done(server, host_id), 60, "repository initialised")
        src = tmp_path / "src"
        src.mkdir()
        for i in range(20):
            (src / f"f{i}").write_bytes(os.urandom(1_000_000))
        status, _ = await server.call("PUT", f"/hosts/{host_id}/bandwidth", json={"upload_kbps": 100})
        assert status == 200
        status, group = await server.call("POST", f"/hosts/{host_id}/source-groups",
                                          json={"name": "big", "includes": [str(src)]})
        assert status == 201, group

        app = new_app(server)
        async with app.run_test(size=SIZE) as pilot:
            fleet = await quick_sign_in(pilot, app)
            host = await open_host(pilot, app, fleet, host_id)
            await pilot.press("2", "r")  # run now: the live log opens
            await wait_for(lambda: isinstance(app.screen, JobLogScreen), what="the backup's log")
            log = app.screen
            await wait_for(lambda: log.job.state == JobState.running and log.progress_text, 30, "progress")
            await pilot.press("c")
            await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="cancel asks first")
            await pilot.press("y")
            # within a second or two, not after the grace: the job says it is being cancelled
            await wait_for(lambda: "cancelling" in info(log), 3, "cancelling shown")
            assert log.job.state == JobState.running, "restic still runs (finishing its uploads)"
            assert not log.query_one("#job-progress").display, "no frozen bar"
            await wait_for(lambda: any("cancel" in ln.text for ln in log.lines), 5, "the agent says what it does")
            await pilot.press("escape")
            await wait_for(lambda: app.screen is host, what="back on the host")
            jobs = host.pane("jobs").table
            assert cell(jobs, log.job.id, "state") == "cancelling"
            await wait_for(lambda: host.pane("jobs").jobs[log.job.id].state == JobState.cancelled, 30, "cancelled")
            assert cell(jobs, log.job.id, "state") == "cancelled"
    finally:
        await run.close()


def info(log: JobLogScreen) -> str:
    return str(log.query_one("#job-info").render())
