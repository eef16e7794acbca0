"""The console's two streams (the app's events, a job log's) come back after the server drops
them, and both wait between attempts with the one backoff (rm_core/backoff.py)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from datetime import datetime, timezone

from rm_core import protocol as p
from rm_server.keys import EVENTS
from rm_tui import app as app_module
from rm_tui.screens import job_log
from rm_tui.screens.job_log import JobLogScreen
from tests.conftest import TestAgent, wait_for
from tests.tui.helpers import SIZE, jobs_of, make_group, new_app, quick_sign_in


async def test_events_and_job_log_streams_come_back_after_the_server_drops_them(server):
    host_id, agent_token = await server.enroll("web-1")
    group = await make_group(server, host_id)
    agent = TestAgent(server, agent_token)
    await agent.connect()
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run", role="operator")
    assert status == 202, body
    (job,) = await jobs_of(server, host_id)
    now = datetime.now(timezone.utc)
    await agent.expect("command.run")
    await agent.send(p.JobStarted(job_id=job["id"], started_at=now, kind="backup"))
    await agent.send(p.JobLog(job_id=job["id"], lines=[p.LogLine(seq=2, ts=now, text="before the drop")]))
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await quick_sign_in(pilot, app)
        app.push_screen(JobLogScreen((await app.client.jobs(host_id=host_id))[0], "web-1"))
        await wait_for(lambda: isinstance(app.screen, JobLogScreen) and app.screen.is_mounted, what="log screen")
        log = app.screen
        await wait_for(lambda: log.lines, what="log backlog")
        epoch = app.events_epoch

        await server.app[EVENTS].close_all()  # every operator socket, as a server restart does
        await wait_for(lambda: app.events_connected and app.events_epoch == epoch + 1, 30, "events reconnected")
        await agent.send(p.JobLog(job_id=job["id"], lines=[p.LogLine(seq=3, ts=now, text="after the drop")]))
        await wait_for(lambda: [ln.text for ln in log.lines] == ["before the drop", "after the drop"],
                       30, "the log resubscribed, no line twice")
    await agent.close()


def loops_reading_events(module) -> list[ast.AST]:
    """Functions of `module` that open the events stream (`client.events()`)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(module)))
    return [fn for fn in ast.walk(tree) if isinstance(fn, ast.AsyncFunctionDef)
            and "client.events()" in ast.unparse(fn)]


def test_every_events_loop_waits_with_the_shared_backoff():
    """A hand-rolled `delay * 2` drifted from the agent's (no jitter, another cap): one backoff."""
    loops = loops_reading_events(app_module) + loops_reading_events(job_log)
    assert len(loops) == 2, [getattr(fn, "name", "?") for fn in loops]
    for fn in loops:
        source = ast.unparse(fn)
        assert "Backoff(" in source and "backoff.next()" in source, f"{fn.name} waits without rm_core.backoff"
        assert "delay * 2" not in source
