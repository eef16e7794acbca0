"""The console reaches the second copy, the anomaly tell and key rotation: the history tab's
plots and its acknowledge, the fleet's repository growth screen (a real server, a
protocol-level agent reporting backups and sizes)."""

from __future__ import annotations

from rm_core import protocol as p
from rm_core.ids import new_id
from rm_tui.host_tabs.history import GroupPlots
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.growth import GrowthScreen
from tests.conftest import TestAgent, wait_for
from tests.server.server_helpers import finished, started
from tests.tui.helpers import make_group, new_app, open_host, quick_sign_in

SIZE = (120, 40)
MiB = 1 << 20


async def _backups(server, agent: TestAgent, group_id: str, summaries: list[tuple[int, int]]) -> None:
    for i, (changed, added) in enumerate(summaries):
        job_id = new_id()
        await agent.send(p.RepoStats(total_size=(10 << 30) + i * added))
        await agent.send(started(job_id, source_group_id=group_id))
        await agent.send(finished(job_id, 2, summary={"files_new": 0, "files_changed": changed, "data_added": added,
                                                      "total_files_processed": 30_000, "total_duration": 30.0}))
        await agent.expect("ack")
        await agent.expect("ack")


async def test_history_plots_acknowledge_and_growth(server):
    host_id, token = await server.enroll("files-1")
    agent = TestAgent(server, token)
    await agent.connect(features=["query", "copy", "rotate_key"])
    group = await make_group(server, host_id)
    await _backups(server, agent, group["id"], [(100 + i, 40 * MiB) for i in range(6)] + [(29_000, 9 << 30)])

    async def flagged() -> bool:
        _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
        return host["open_anomalies"] == 1

    await wait_for(flagged, what="the attack flagged")
    app = new_app(server)
    async with app.run_test(size=SIZE) as pilot:
        fleet = await quick_sign_in(pilot, app)
        host = await open_host(pilot, app, fleet, host_id)
        await pilot.press("8")
        tab = host.pane("history")
        await wait_for(lambda: tab.loaded and list(tab.query(GroupPlots)), what="plots")
        plots = tab.query_one(GroupPlots)
        assert len(plots.history.runs) == 7 and plots.history.runs[-1].anomaly, plots.history
        assert "files_changed" in plots.history.lines
        await pilot.press("a")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="acknowledge question")
        await pilot.press("y")

        async def acknowledged() -> bool:
            _, h = await server.call("GET", f"/hosts/{host_id}", role="viewer")
            return h["open_anomalies"] == 0

        await wait_for(acknowledged, what="acknowledged through the console")
        await pilot.press("escape")
        await pilot.press("W")
        await wait_for(lambda: isinstance(app.screen, GrowthScreen) and app.screen.growth is not None, what="growth")
        growth = app.screen.growth
        assert growth is not None and [h.hostname for h in growth.hosts] == ["files-1"]
        assert growth.hosts[0].size == (10 << 30) + 6 * (9 << 30) and growth.hosts[0].size_before == 10 << 30
    await agent.close()
