"""Snapshot tests (pytest-textual-snapshot) pinning the fleet, host tabs and job log at 120x40.

snap_compare runs the app with App.run (its own event loop), so these tests are sync and
the server is a real `rm-server serve` subprocess. What would change run to run (the
server's port, job ids and times) is replaced by fixed values before the screenshot.
Update after an intended change: `pytest tests/tui/test_snapshots.py --snapshot-update`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import ADMIN_PASSWORD

SIZE = (120, 40)
RM_SERVER = Path(sys.executable).with_name("rm-server")
FIXED_TS = datetime(2026, 1, 1, 8, 21, tzinfo=timezone.utc)
FIXED_JOB = "01KDZ0000000000000JOBJOB01"


class Srv:
    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen([str(RM_SERVER), "serve", "--data-dir", str(data_dir), "--listen",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = ""
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline and not self.url:
            line = self.proc.stdout.readline()
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
        assert self.url, "rm-server did not start"
        token = (data_dir / "bootstrap-token").read_text().strip()
        self.call("POST", "/auth/bootstrap", {"token": token, "username": "operator", "password": ADMIN_PASSWORD})
        self.token = self.call("POST", "/auth/login", {"username": "operator", "password": ADMIN_PASSWORD})["token"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.url}/api/v1{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.token}"}
                                                 if getattr(self, "token", None) else {})})
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else {}

    def enroll(self, hostname: str) -> str:
        tok = self.call("POST", "/enrollment-tokens", {})["token"]
        self.token, saved = None, self.token
        try:
            return self.call("POST", "/agents/enroll", {"token": tok, "hostname": hostname, "os": "linux",
                                                        "arch": "x86_64", "agent_version": "test"})["host_id"]
        finally:
            self.token = saved


@pytest.fixture
def fleet_server(tmp_path: Path, monkeypatch) -> Iterator[tuple[Srv, dict[str, str]]]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    srv = Srv(tmp_path / "data")
    ids = {name: srv.enroll(name) for name in ("db-1", "web-1", "web-2", "web-3")}
    group = srv.call("POST", f"/hosts/{ids['web-1']}/source-groups",
                     {"name": "etc", "includes": ["/etc", "/home"], "excludes": ["*.tmp"],
                      "retention": {"keep_daily": 7, "keep_weekly": 4}})
    srv.call("POST", f"/hosts/{ids['web-1']}/schedules",
             {"name": "nightly", "cron": "0 3 * * *", "timezone": "UTC", "source_group_ids": [group["id"]]})
    ids["group"] = group["id"]
    try:
        yield srv, ids
    finally:
        srv.proc.terminate()
        srv.proc.wait(10)
        assert srv.proc.stdout is not None
        srv.proc.stdout.close()
        monkeypatch.delenv("TZ")
        time.tzset()


def make(srv: Srv):
    from rm_tui.app import make_app

    app = make_app(srv.url)
    app.animation_level = "none"
    return app


async def until(pilot, predicate, what: str, timeout: float = 15) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    await pilot.pause()


async def sign_in(pilot) -> None:
    from textual.widgets import Input

    from rm_tui.screens.fleet import FleetScreen
    from rm_tui.screens.login import LoginScreen

    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, LoginScreen), "login")
    app.screen.query_one("#username", Input).value = "operator"
    app.screen.query_one("#password", Input).value = ADMIN_PASSWORD
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.loads >= 1
                and app.events_connected, "fleet")
    app.sub_title = "operator (operator) @ rm-server"  # not the random port


def test_fleet_screen(fleet_server, snap_compare):
    srv, ids = fleet_server

    async def run_before(pilot) -> None:
        await sign_in(pilot)
        fleet = pilot.app.screen
        await until(pilot, lambda: fleet.model.next_runs.loaded, "crons")
        fleet.model.next_runs.clock = lambda: FIXED_TS  # "next run" moves with the clock
        fleet.table.invalidate(None)
        await pilot.press("down", "space", "down", "space")  # two marked hosts

    assert snap_compare(make(srv), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("tab", ["2", "3", "7"])
def test_host_tabs(fleet_server, snap_compare, tab):
    srv, ids = fleet_server

    async def run_before(pilot) -> None:
        from rm_tui.screens.host import HostScreen

        await sign_in(pilot)
        app = pilot.app
        app.screen.table.move_to(ids["web-1"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HostScreen) and app.screen.loaded
                    and app.screen.settings_loaded, "host")
        await pilot.press(tab)
        if tab == "3":  # "next run" moves with the clock: pin it
            table = app.screen.query_one("#schedules-table")
            cells_for = table.cells_for
            table.cells_for = lambda key: [*cells_for(key)[:4], "2026-01-02 03:00 UTC"]
            table.invalidate(None)

    assert snap_compare(make(srv), terminal_size=SIZE, run_before=run_before)


def test_job_log_screen(fleet_server, snap_compare):
    srv, ids = fleet_server
    srv.call("POST", f"/hosts/{ids['web-1']}/source-groups/{ids['group']}/run")

    async def run_before(pilot) -> None:
        from rm_core.jobs import JobLogLine
        from rm_tui.screens.job_log import JobLogScreen

        await sign_in(pilot)
        app = pilot.app
        job = (await app.client.jobs(host_id=ids["web-1"]))[0]
        fixed = job.model_copy(update={"id": FIXED_JOB, "created_at": FIXED_TS})
        screen = JobLogScreen(fixed, "web-1")
        await app.push_screen(screen)
        await pilot.pause()
        screen.workers.cancel_group(screen, "job-log")  # the fixed id has no log on the server
        screen.log_view.append(JobLogLine(seq=i + 2, ts=FIXED_TS, stream="stderr" if i == 3 else "stdout",
                                          text=f"line {i}: processed {i * 1000} files")
                               for i in range(6))
        screen.host_offline_since = FIXED_TS
        screen.render_info()

    assert snap_compare(make(srv), terminal_size=SIZE, run_before=run_before)
