"""Job log: search, cancel behind a confirm, and the unlock hint on a lost job."""

from __future__ import annotations

from datetime import datetime, timezone

from textual.widgets import ProgressBar, Static

from rm_tui.widgets.log_view import LogView

from rm_core import protocol as p
from rm_core.jobs import Job
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.job_log import JobLogScreen
from tests.conftest import TestAgent, wait_for
from tests.tui.helpers import SIZE, jobs_of, new_app, quick_sign_in, shown_bindings, type_text


async def post_job(server, host_id: str, body: dict) -> dict:
    status, job = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json=body)
    assert status == 202, job
    return job


async def test_search_cancel_and_unlock_after_lost(server):
    host_id, token = await server.enroll("web-1")
    agent = TestAgent(server, token)
    await agent.connect()
    job = await post_job(server, host_id, {"kind": "check"})
    await agent.expect("command.run")
    now = datetime.now(timezone.utc)
    await agent.send(p.JobStarted(job_id=job["id"], started_at=now, kind="check"))
    await agent.send(p.JobLog(job_id=job["id"], lines=[
        p.LogLine(seq=2, ts=now, text="using temporary cache"),
        p.LogLine(seq=3, ts=now, text="create exclusive lock for repository"),
        p.LogLine(seq=4, ts=now, text="check snapshots, trees and blobs")]))
    await wait_for(lambda: _state(server, job["id"], "running"), what="job running")

    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app)
        status, body = await server.call("GET", f"/jobs/{job['id']}")
        app.push_screen(JobLogScreen(Job.model_validate(body), "web-1"))
        await wait_for(lambda: isinstance(app.screen, JobLogScreen) and app.screen.is_mounted, what="log screen")
        await pilot.pause()
        screen = app.screen
        log = screen.query_one("#log", LogView)
        await wait_for(lambda: len(screen.lines) == 3, what="backlog")
        assert log.shown_count == 3

        await pilot.press("slash")
        await type_text(pilot, "LOCK")
        await pilot.press("enter")
        assert log.shown_count == 1 and "1 of 3 lines" in str(screen.query_one("#job-info", Static).render())
        await pilot.press("escape")
        assert app.screen is screen and log.shown_count == 3, "esc clears the search, stays on the log"

        assert "Run unlock" not in shown_bindings(app) and "Cancel job" in shown_bindings(app)
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and not [e for e in agent.received if e.type == "command.cancel"]
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await pilot.press("y")
        cancel = await agent.expect("command.cancel")
        assert cancel.payload.job_id == job["id"]

        # The agent restarts without the job: it is lost, and the screen offers unlock.
        await agent.close()
        await wait_for(lambda: host_id not in server.hub.connections, what="agent gone")
        # mid-run and the host is away: say what is known, not a frozen "running 26 %"
        await wait_for(lambda: "outcome unknown until it returns" in str(screen.query_one("#job-info", Static).render()),
                       what="host offline note")
        again = TestAgent(server, token)
        await again.connect(running_jobs=[])
        await wait_for(lambda: screen.job.state == "lost", what="lost shown")
        info = str(screen.query_one("#job-info", Static).render())
        assert "Press u to run unlock" in info and "outcome unknown" not in info
        assert not screen.query_one("#job-progress", ProgressBar).display, "a lost job shows no full bar"
        assert "Run unlock" in shown_bindings(app) and "Cancel job" not in shown_bindings(app)
        await pilot.press("u")
        unlocks = await wait_for(lambda: _kinds(server, host_id, "unlock"), what="unlock job")
        assert unlocks[0]["actor_kind"] == "user"
        await wait_for(lambda: isinstance(app.screen, JobLogScreen) and app.screen.job.id == unlocks[0]["id"],
                       what="unlock log opened")
    await again.close()


async def _state(server, job_id: str, state: str) -> bool:
    status, body = await server.call("GET", f"/jobs/{job_id}")
    return body["state"] == state


async def _kinds(server, host_id: str, kind: str) -> list[dict]:
    return [j for j in await jobs_of(server, host_id) if j["kind"] == kind]


async def test_readonly_log_has_no_cancel(server):
    host_id, _ = await server.enroll("web-1")
    job = await post_job(server, host_id, {"kind": "check"})  # offline host: stays queued
    app = new_app(server, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app)
        app.push_screen(JobLogScreen(Job.model_validate(job), "web-1"))
        await wait_for(lambda: isinstance(app.screen, JobLogScreen) and app.screen.is_mounted, what="log screen")
        await pilot.pause()
        assert "Cancel job" not in shown_bindings(app) and "Search" in shown_bindings(app)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, JobLogScreen)
    status, body = await server.call("GET", f"/jobs/{job['id']}")
    assert body["state"] == "queued"
