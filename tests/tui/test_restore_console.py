"""The console half of restore: the diff of two snapshots, the retention preview before saving
and the fleet's "last verified" column, against a real server, a real agent and real restic."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import Input, Static

from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.fleet import FleetScreen
from rm_tui.screens.forms import SourceGroupForm
from rm_tui.screens.retention_preview import RetentionPreviewScreen
from rm_tui.screens.snapshot_diff import SnapshotDiffScreen
from rm_tui.widgets.table import ResourceTable
from tests.agent.conftest import RESTIC, restic_cli
from tests.agent.test_agent_server import host_state, job_done
from tests.agent.test_restic_versions import Restic
from tests.agent.test_restore_drills import PW_B, backup, make_source, start_agent
from tests.conftest import Server, TestAgent, wait_for
from tests.tui.helpers import SIZE, cell, new_app, open_host, quick_sign_in, shown_bindings

RESTIC_014 = Restic(RESTIC, (0, 14, 0))


async def snapshot_count(server: Server, host_id: str, n: int) -> bool:
    _, body = await server.call("GET", f"/hosts/{host_id}/snapshots")
    return len(body["snapshots"]) == n


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def rows(table: ResourceTable) -> list[list[str]]:
    return [[str(c) for c in table.cells_for(k)] for k in table.keys]


async def test_diff_and_retention_preview_of_real_snapshots(server: Server, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    host_id, run, _ = await start_agent(server, tmp_path, "web-1", repo, PW_B, RESTIC_014)
    try:
        src = make_source(tmp_path / "src")
        group, first = await backup(server, host_id, src)
        (src / "etc" / "new.conf").write_text("added between the snapshots\n")
        (src / "var" / "log05").unlink()
        (src / "etc" / "hosts").write_text("127.0.0.1 localhost web-1\n")
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        assert status == 202, body
        job = await wait_for(lambda: job_done(server, body["id"]), 60, "second backup")
        assert job["state"] == "succeeded", job
        second = job["summary"]["snapshot_id"]
        await wait_for(lambda: snapshot_count(server, host_id, 2), 30, "both snapshots reported")

        app = new_app(server)
        async with app.run_test(size=SIZE) as pilot:
            fleet = await quick_sign_in(pilot, app)
            host = await open_host(pilot, app, fleet, host_id)
            await pilot.press("5")
            await wait_for(lambda: host.settings_loaded, what="snapshots loaded")
            table = host.query_one("#snapshots-table")
            assert table.row_count == 2 and host.pane("snapshots").selected().startswith(second)  # newest first
            assert "Diff from here" in shown_bindings(app)

            # d on the newest, d on the older: the diff reads from the older to the newer
            await pilot.press("d")
            assert host.pane("snapshots").diff_from.startswith(second)
            assert "Diff to here" in shown_bindings(app) and "Diff from here" not in shown_bindings(app)
            assert f"diff from {second[:8]}" in text(host, "#snapshots-hint")
            await pilot.press("down", "d")
            await wait_for(lambda: isinstance(app.screen, SnapshotDiffScreen) and app.screen.loads, 30, "diff")
            diff = app.screen
            assert diff.problem is None, diff.problem
            assert diff.older[0].startswith(first) and diff.newer[0].startswith(second)
            summary = text(diff, "#diff-summary")
            assert "files: +1 added · -1 removed · 1 changed" in summary, summary
            changes = rows(diff.query_one("#diff-changes", ResourceTable))
            assert ["+", "added", f"{src}/etc/new.conf"] in changes, changes
            assert ["-", "removed", f"{src}/var/log05"] in changes, changes
            assert ["M", "modified", f"{src}/etc/hosts"] in changes, changes
            assert "all shown" in text(diff, "#diff-cap") and "More paths" not in shown_bindings(app)

            # the server's cap, said as it is: 1 of N shown, m asks for more
            diff.limit = 1
            await pilot.press("ctrl+r")
            await wait_for(lambda: diff.loads >= 2, 30, "capped diff")
            assert len(diff.result.changes) == 1 and diff.result.truncated
            total = diff.result.total_changes
            assert f"showing 1 of {total} changed paths" in text(diff, "#diff-cap")
            assert "More paths" in shown_bindings(app)
            await pilot.press("m")
            await wait_for(lambda: diff.loads >= 3, 30, "full diff")
            assert len(diff.result.changes) == total and not diff.result.truncated

            await pilot.press("escape")
            assert app.screen is host and host.pane("snapshots").diff_from is None

            # retention preview: keep last 1, as typed in the form and not saved
            await pilot.press("2")
            await pilot.press("e")
            await wait_for(lambda: isinstance(app.screen, SourceGroupForm), what="group form")
            form = app.screen
            assert "Preview retention" in shown_bindings(app)
            form.query_one("#keep_last", Input).value = "1"
            await pilot.press("ctrl+f")
            await wait_for(lambda: isinstance(app.screen, RetentionPreviewScreen) and app.screen.loads, 30,
                           "retention preview")
            preview = app.screen
            assert preview.problem is None, preview.problem
            assert (preview.preview.keep_count, preview.preview.remove_count) == (1, 1)
            assert "keeps 1 snapshot, removes 1 snapshot" in text(preview, "#preview-summary")
            shown = rows(preview.query_one("#preview-table", ResourceTable))
            assert [r[:2] for r in shown] == [["keep", second[:8]], ["remove", first[:8]]], shown
            assert "last snapshot" in shown[0][4], shown

            # an empty policy: the server's refusal, in words, in the same screen
            await pilot.press("escape")
            assert app.screen is form
            form.query_one("#keep_last", Input).value = ""
            await pilot.press("ctrl+f")
            await wait_for(lambda: isinstance(app.screen, RetentionPreviewScreen) and app.screen.loads, 30,
                           "refused preview")
            assert "remove every snapshot" in app.screen.problem
            assert "no preview:" in text(app.screen, "#preview-summary")
            await pilot.press("escape")
            await pilot.press("escape")  # the form, edited: it asks before discarding
            await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="discard question")
            await pilot.press("y")
            await wait_for(lambda: app.screen is host, what="form discarded, nothing saved")

            # nothing was saved and nothing forgotten
            _, saved = await server.call("GET", f"/hosts/{host_id}/source-groups/{group['id']}")
            assert saved["retention"]["keep_last"] == 3
            listed = restic_cli(str(repo), tmp_path, "snapshots", "--json", password=PW_B).stdout
            assert first in listed and second in listed

            # the host goes away: the diff says so in words, never a traceback
            await run.close()
            await wait_for(lambda: host_state(server, host_id, "offline"), 15, "host offline")
            await pilot.press("5")
            await pilot.press("d", "up", "d")  # the cursor is still on the older snapshot
            await wait_for(lambda: isinstance(app.screen, SnapshotDiffScreen) and app.screen.loads, 30, "diff")
            problem = app.screen.problem
            assert problem and "web-1 is offline" in problem and host_id not in problem, problem
            assert "reconnects" in problem
            assert "no diff: web-1 is offline" in text(app.screen, "#diff-summary")
            assert "no diff to show" in app.screen.query_one("#diff-changes", ResourceTable).empty
    finally:
        await run.close()


async def test_an_agent_too_old_for_live_queries_is_said_in_words(server: Server) -> None:
    host_id, token = await server.enroll("old-1")
    agent = TestAgent(server, token)
    await agent.connect(features=[])  # an agent from before live queries: no "query" feature
    try:
        await wait_for(lambda: host_state(server, host_id, "online"), what="old agent online")
        app = new_app(server)
        async with app.run_test(size=SIZE) as pilot:
            await quick_sign_in(pilot, app)
            app.push_screen(SnapshotDiffScreen(host_id, "old-1", ("ab" * 32, None), ("cd" * 32, None)))
            await wait_for(lambda: isinstance(app.screen, SnapshotDiffScreen) and app.screen.loads, what="refusal")
            problem = app.screen.problem
            assert problem and problem.startswith("the agent of old-1 is too old") and host_id not in problem
            assert "upgrade rm-agent on that host" in text(app.screen, "#diff-summary")
    finally:
        await agent.close()


async def test_last_verified_column_follows_real_drills(server: Server, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    host_id, run, _ = await start_agent(server, tmp_path, "zz-web", repo, PW_B, RESTIC_014)
    other, _ = await server.enroll("aa-db")  # never drilled: a blank cell, not a problem
    try:
        src = make_source(tmp_path / "src")
        group, _ = await backup(server, host_id, src)
        drill = f"/hosts/{host_id}/source-groups/{group['id']}/drill"
        status, body = await server.call("PUT", drill, json={"sample_files": 40, "sample_mb": 1})
        assert status == 200, body

        app = new_app(server)
        async with app.run_test(size=SIZE) as pilot:
            fleet = await quick_sign_in(pilot, app)
            assert isinstance(fleet, FleetScreen)
            assert cell(fleet.table, host_id, "verified") == "" and cell(fleet.table, other, "verified") == ""

            # a passing drill: the column follows the drill's job event (no reload)
            status, body = await server.call("POST", drill + "/run", role="operator")
            assert status == 202, body
            job = await wait_for(lambda: job_done(server, body["id"]), 60, "drill")
            assert job["state"] == "succeeded", job
            await wait_for(lambda: cell(fleet.table, host_id, "verified").endswith("s ago"), 10, "verified cell")
            assert fleet.loads == 1
            assert fleet.model.hosts[host_id].last_verified.mismatches == 0

            # a failing drill (the live file's bytes changed under an unchanged size and mtime)
            victim = src / "var" / "log03"
            st = victim.stat()
            victim.write_bytes(os.urandom(st.st_size))
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
            status, body = await server.call("POST", drill + "/run", role="operator")
            job = await wait_for(lambda: job_done(server, body["id"]), 60, "failing drill")
            assert job["state"] == "failed", job
            await wait_for(lambda: cell(fleet.table, host_id, "verified").startswith("failed "), 10, "failed cell")
            verified_at = [c.key for c in fleet.table.columns].index("verified")
            assert fleet.table.cells_for(host_id)[verified_at].style == "bold red"
            await wait_for(lambda: "1 drill failed" in text(fleet, "#fleet-status"), what="status line count")

            # problems first: the failed drill goes on top though its name sorts last
            assert fleet.table.keys == [other, host_id]
            await pilot.press("p")
            assert fleet.table.keys == [host_id, other]
            await pilot.press("p", "D")  # sort by last verified: failed drills first
            assert fleet.table.keys == [host_id, other] and "last verified" in text(fleet, "#fleet-status")
            assert app.screen.active_bindings["D"].binding.description == "Sort by last verified"

            # a fresh list from the server agrees with what the events built
            await pilot.press("ctrl+r")
            await wait_for(lambda: fleet.loads == 2, what="reload")
            assert cell(fleet.table, host_id, "verified").startswith("failed ")
            host = await open_host(pilot, app, fleet, host_id)
            overview = text(host, "#overview-text")
            assert "last restore drill failed" in overview and "1 mismatch" in overview, overview
    finally:
        await run.close()
