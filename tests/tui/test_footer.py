"""The footer of every place in the console: the focused widget's keys first, `enter` where it
opens something, cut nowhere at 80 or 120 columns, and the same as docs/tui.md's key map."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from textual.widgets import Footer

from rm_core import protocol as p
from rm_tui.screens.bulk import BulkActionScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import ScheduleForm, SourceGroupForm
from rm_tui.screens.job_log import JobLogScreen
from rm_tui.screens.jobs import FleetJobsScreen
from rm_tui.screens.snapshot_browser import SnapshotBrowser
from tests.conftest import TestAgent, wait_for
from tests.tui.helpers import make_group, new_app, open_host, quick_sign_in

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tui.md"
Footers = dict[str, list[tuple[str, str]]]


def footer_keys(app) -> list:
    # by type name: FooterKey is not exported by textual.widgets
    return list(app.screen.query_one(Footer).query("FooterKey"))


def footer_of(app) -> list[tuple[str, str]]:
    return [(k.key_display, k.description) for k in footer_keys(app)]


def overflow(app) -> int:
    """How many columns the footer's last key reaches past the screen's edge (0: it fits)."""
    keys = footer_keys(app)
    return max((k.region.right for k in keys), default=0) - app.screen.size.width


async def walk(server, size: tuple[int, int]) -> tuple[Footers, dict[str, int]]:
    """Every place an operator meets on a first day, its footer and how far it overflows."""
    host_id, agent_token = await server.enroll("web-1")
    group = await make_group(server, host_id)
    status, _ = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                  json={"name": "nightly", "cron": "0 2 * * *", "source_group_ids": [group["id"]]})
    assert status == 201
    agent = TestAgent(server, agent_token)
    await agent.connect()
    await agent.send(p.SnapshotsReport(snapshots=[p.SnapshotInfo(
        id="ab" * 32, short_id="abababab", time=datetime.now(timezone.utc), paths=["/etc"], tags=["etc"])]))
    footers: Footers = {}
    over: dict[str, int] = {}
    app = new_app(server)
    async with app.run_test(size=size) as pilot:
        async def seen(place: str) -> None:
            await pilot.pause()
            await pilot.pause()
            footers[place], over[place] = footer_of(app), overflow(app)

        async def press(*keys: str) -> None:
            await pilot.press(*keys)
            await pilot.pause()

        fleet = await quick_sign_in(pilot, app)
        await seen("Fleet")
        await press("slash")
        await seen("Fleet, filter box")
        await press("escape", "space")
        await seen("Fleet, hosts marked")
        await press("x")
        await wait_for(lambda: isinstance(app.screen, BulkActionScreen), what="bulk")
        await seen("Run on marked")
        await press("escape", "escape")
        await press("J")
        await wait_for(lambda: isinstance(app.screen, FleetJobsScreen), what="fleet jobs")
        await seen("Fleet jobs")
        await press("escape")

        host = await open_host(pilot, app, fleet, host_id)
        await wait_for(lambda: host.settings_loaded, what="host settings")
        for key, tab in zip("12345678", ("overview", "source groups", "schedules", "jobs", "snapshots",
                                         "maintenance", "settings", "history")):
            await press(key)
            await seen(f"Host, {tab}")
        await press("5", "d")
        await seen("Host, snapshots, diff picked")
        await press("escape", "enter")
        await wait_for(lambda: isinstance(app.screen, SnapshotBrowser), what="snapshot browser")
        await seen("Snapshot browser")
        await press("escape", "2", "n")
        await wait_for(lambda: isinstance(app.screen, SourceGroupForm), what="group form")
        await seen("Form")
        await press("escape", "ctrl+d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await seen("Yes/no question")
        await press("n", "3", "n")
        await wait_for(lambda: isinstance(app.screen, ScheduleForm), what="schedule form")
        await press("escape", "2", "r")
        await wait_for(lambda: isinstance(app.screen, JobLogScreen), what="job log")
        await seen("Job log")
        await press("escape", "escape")
        for place in ("enrollment", "audit", "operators", "channels"):
            app.go_to(place)
            await wait_for(lambda: app.screen.is_mounted and type(app.screen).__name__.lower().startswith(place[:5]),
                           what=place)
            await seen(place.capitalize())
    await agent.close()
    return footers, over


def key_map(text: str) -> Footers:
    """docs/tui.md's "Key map" table: place -> [(key, description), …] in footer order."""
    section = text.split("\n## Key map", 1)[1].split("\n## ", 1)[0]
    rows: Footers = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("Place", "") or set(cells[0]) <= set("-"):
            continue
        rows[cells[0]] = [(m.group(1), m.group(2).strip()) for m in re.finditer(r"`([^`]+)` ([^·]+)", cells[1])]
    return rows


async def test_every_footer_fits_80_columns_and_matches_the_key_map_in_docs(server):
    footers, over = await walk(server, (80, 24))
    assert {place: o for place, o in over.items() if o > 0} == {}, "footer cut at 80 columns"
    assert ("enter", "Open") == footers["Fleet"][0], "enter first on the fleet"
    assert footers["Host, source groups"][0] == ("r", "Run now"), "the tab's own keys before the screen's"
    documented = key_map(DOCS.read_text())
    drift = {place: (documented.get(place), shown) for place, shown in footers.items()
             if documented.get(place) != shown}
    assert not drift, "docs/tui.md's key map differs from the footer (documented, shown):\n" + "\n".join(
        f"{place}: {d}\n{' ' * len(place)}  {s}" for place, (d, s) in drift.items())
    assert set(documented) == set(footers), f"places in the docs that the walk does not visit: " \
                                            f"{set(documented) - set(footers)}"


async def test_every_footer_fits_120_columns(server):
    _, over = await walk(server, (120, 40))
    assert {place: o for place, o in over.items() if o > 0} == {}
