"""The keys the server's errors name ("press i on the host in the console", `p`, `a`) do what
they say on the host screen, whichever tab is in front: a repository that vanished is
initialised again from the console alone, its live log shown. Real server, real agent,
real restic."""

from __future__ import annotations

import shutil
from pathlib import Path

from rm_core import restic as R
from rm_core.enums import JobKind, JobState
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.job_log import JobLogScreen
from rm_tui.screens.repo_form import RepoForm
from tests.agent.conftest import RESTIC
from tests.agent.test_agent_server import job_done
from tests.agent.test_restic_versions import Restic
from tests.agent.test_restore_drills import PW_B, make_source, start_agent
from tests.conftest import Server, wait_for
from tests.tui.helpers import SIZE, cell, new_app, open_host, quick_sign_in, toasts, usable_bindings

RESTIC_014 = Restic(RESTIC, (0, 14, 0))


def test_the_advice_names_the_keys_this_console_binds() -> None:
    """The keys in rm_core's advice are the host screen's: a renamed key must fail here."""
    from rm_tui.screens.host import HostScreen

    keys = {b.key: b.action for b in HostScreen.BINDINGS}
    assert "press i on the host" in R.ADVICE_INIT and keys.get("i") == "init_repo"
    assert "press p on the host" in R.ADVICE_REPO and keys.get("p") == "repo"
    assert "press a on the host" in R.ADVICE_ADMIN and keys.get("a") == "admin_creds"


async def test_i_initialises_a_vanished_repository_and_shows_the_live_log(server: Server, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    host_id, run, _ = await start_agent(server, tmp_path, "web-1", repo, PW_B, RESTIC_014)
    try:
        src = make_source(tmp_path / "src")
        status, group = await server.call("POST", f"/hosts/{host_id}/source-groups",
                                          json={"name": "docs", "includes": [str(src)]})
        assert status == 201, group
        shutil.rmtree(repo)  # the repository is gone (a wiped disk, a new bucket)
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        failed = await wait_for(lambda: job_done(server, body["id"]), 60, "backup without a repository")
        assert failed["state"] == "failed" and R.ADVICE_INIT in failed["error"], failed

        app = new_app(server)
        async with app.run_test(size=SIZE) as pilot:
            fleet = await quick_sign_in(pilot, app)
            host = await open_host(pilot, app, fleet, host_id)
            await pilot.press("4")  # the jobs tab, where the failed backup says "press i"
            jobs = host.pane("jobs").table
            assert "press i on the host" in cell(jobs, failed["id"], "info")

            # p and a, named by the other errors, open their forms from here too
            for key, admin in (("p", False), ("a", True)):
                await pilot.press(key)
                await wait_for(lambda: isinstance(app.screen, RepoForm), what=f"{key}: repository form")
                assert app.screen.admin is admin
                await pilot.press("escape")
                await wait_for(lambda: app.screen is host, what="back on the host")

            await pilot.press("i")
            await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="init asks first")
            assert str(repo) in app.screen.question
            await pilot.press("n")
            await wait_for(lambda: app.screen is host, what="no: back, nothing started")
            _, listed = await server.call("GET", f"/jobs?host_id={host_id}&kind=init")
            assert len(listed["jobs"]) == 1, "only the first connect's init"

            await pilot.press("i")
            await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="init asks again")
            await pilot.press("y")
            await wait_for(lambda: isinstance(app.screen, JobLogScreen), 15, "the init job's log")
            log = app.screen
            assert log.job.kind == JobKind.init
            await wait_for(lambda: log.job.state == JobState.succeeded, 60, "init succeeded, live")
            await wait_for(lambda: any("created restic repository" in ln.text for ln in log.lines), 15,
                           "restic's own lines in the log")
            assert (repo / "config").exists()
            await pilot.press("escape")
            await wait_for(lambda: app.screen is host, what="back on the host")
            assert host.pane("jobs").selected() == log.job.id, "the jobs tab's cursor on the init"
            assert not toasts(app, "error"), toasts(app)

        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        done = await wait_for(lambda: job_done(server, body["id"]), 60, "backup after the init")
        assert done["state"] == "succeeded", done
    finally:
        await run.close()


async def test_a_read_only_console_has_no_init(server: Server) -> None:
    host_id, _ = await server.enroll("web-1")
    app = new_app(server, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        host = await open_host(pilot, app, fleet, host_id)
        for tab in ("1", "7"):
            await pilot.press(tab)
            assert not {"Init repo", "Init", "Repository", "Repo", "Admin"} & set(usable_bindings(app))
            await pilot.press("i", "p", "a")
            await pilot.pause()
            assert app.screen is host
