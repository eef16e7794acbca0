"""The agent (in-process) against the real server app and real restic repositories."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiohttp import web

from rm_agent.agent import Agent
from rm_agent.config import AgentConfig, save_config
from rm_core import restic as R
from rm_server.app import create_app
from rm_server.config import ServerConfig
from tests.conftest import Server, wait_for

from .conftest import PASSWORD, restic_cli


class AgentClock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


class Running:
    """An Agent running in a task of the test's loop."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(agent.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 60)


async def enrolled_agent(server: Server, tmp_path: Path, repo: Path, *, clock=None, url: str | None = None) -> tuple[str, Running]:
    host_id, token = await server.enroll("agent-host")
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", json={"url": str(repo), "password": PASSWORD})
    assert status == 200, body
    cfg_path = tmp_path / "agent" / "agent.json"
    save_config(cfg_path, AgentConfig(server_url=url or server.url, host_id=host_id, agent_token=token,
                                      cancel_grace_seconds=20))
    from rm_agent.config import load_config

    agent = Agent(load_config(cfg_path), cfg_path, clock=clock or AgentClock(), hostname="agent-host")
    agent.first_connect_grace = 0.5
    run = Running(agent)
    try:
        await wait_for(lambda: run.task.done() or host_state(server, host_id, "online"), 15, "host online")
    finally:
        if run.task.done():
            run.task.result()
    return host_id, run


async def host_state(server: Server, host_id: str, status: str) -> bool:
    code, body = await server.call("GET", f"/hosts/{host_id}")
    return code == 200 and body["status"] == status


async def make_group(server: Server, host_id: str, src: Path, name: str = "docs") -> dict:
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups",
                                     json={"name": name, "includes": [str(src)], "tag": name,
                                           "retention": {"keep_last": 3}})
    assert status == 201, body
    return body


async def job_done(server: Server, job_id: str) -> dict | None:
    status, body = await server.call("GET", f"/jobs/{job_id}")
    assert status == 200, body
    return body if body["state"] in ("succeeded", "warning", "failed", "cancelled", "lost") else None


async def all_logs(server: Server, job_id: str) -> list[dict]:
    lines: list[dict] = []
    after = 0
    while True:
        status, page = await server.call("GET", f"/jobs/{job_id}/logs?after_seq={after}&limit=1000")
        assert status == 200, page
        lines += page["lines"]
        if not page["lines"]:
            return lines
        after = page["next_seq"]


async def test_backup_restore_and_reports_through_the_server(server: Server, tmp_path: Path, repo: Path, source: Path) -> None:
    host_id, run = await enrolled_agent(server, tmp_path, repo)
    try:
        group = await make_group(server, host_id, source)
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        assert status == 202, body
        job = await wait_for(lambda: job_done(server, body["job"]["id"]), 30, "backup finished")
        assert job["state"] == "succeeded", job
        snap = job["summary"]["snapshot_id"]
        listed = R.parse_snapshots(restic_cli(str(repo), tmp_path, "snapshots", "--json").stdout)
        assert [s["short_id"] for s in listed] == [snap[:8]]
        _, snaps = await server.call("GET", f"/hosts/{host_id}/snapshots")
        assert any(s["id"].startswith(snap) for s in snaps["snapshots"])
        lines = await all_logs(server, job["id"])
        assert [ln["seq"] for ln in lines] == list(range(2, len(lines) + 2))
        assert any(f"snapshot {snap[:8]} saved" in ln["text"] for ln in lines)
        # restore through the server brings back identical bytes
        target = tmp_path / "restore"
        status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json={
            "kind": "restore", "snapshot_id": snap, "paths": [str(source)], "target": str(target)})
        assert status == 202, body
        job = await wait_for(lambda: job_done(server, body["id"]), 30, "restore finished")
        assert job["state"] == "succeeded", job
        back = target / str(source).lstrip("/")
        for f in ("a.txt", "sub/b.bin"):
            assert (back / f).read_bytes() == (source / f).read_bytes()
        await wait_for(lambda: run.agent.outbox.depth() == 0, 10, "outbox drained by acks")
    finally:
        await run.close()


async def test_cancel_mid_backup_leaves_no_lock(server: Server, tmp_path: Path, repo: Path) -> None:
    src = tmp_path / "slow"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(3 << 20))
    host_id, run = await enrolled_agent(server, tmp_path, repo)
    try:
        status, _ = await server.call("PUT", f"/hosts/{host_id}/bandwidth", json={"upload_kbps": 100})
        assert status == 200
        await wait_for(lambda: run.agent.bandwidth.upload_kbps == 100, 10, "bandwidth applied")
        group = await make_group(server, host_id, src)
        _, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        job_id = body["job"]["id"]
        await wait_for(lambda: (job := run.agent.runner.jobs.get(job_id)) is not None and job.pid is not None,
                       20, "restic running")
        await wait_for(lambda: bool(list((repo / "locks").iterdir())), 20, "restic holds its lock")
        status, body = await server.call("POST", f"/jobs/{job_id}/cancel")
        assert status == 202, body
        job = await wait_for(lambda: job_done(server, job_id), 30, "job cancelled")
        assert job["state"] == "cancelled"
        assert restic_cli(str(repo), tmp_path, "--no-lock", "list", "locks").stdout.strip() == ""
    finally:
        await run.close()


async def start_on_port(data_dir_parent: Path, port: int, clock) -> web.AppRunner:
    config = ServerConfig(data_dir=data_dir_parent / "data", clock=clock, run_background=False)
    app = create_app(config)
    # agent sockets stay open until cleanup; do not wait aiohttp's default 60 s for them
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_server_restart_mid_job_loses_and_duplicates_nothing(tmp_path: Path, repo: Path) -> None:
    """A server we own (not the fixture), so it can die and come back on the same port."""
    import socket

    import aiohttp

    from tests.conftest import ADMIN_PASSWORD, FakeClock

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock()
    srv_dir = tmp_path / "srv"
    runner = await start_on_port(srv_dir, port, clock)
    src = tmp_path / "slow"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02d}").write_bytes(os.urandom(64 << 10))
    run = None
    async with aiohttp.ClientSession() as http:
        server = Server(f"http://127.0.0.1:{port}", None, http, srv_dir / "data", clock)  # type: ignore[arg-type]
        token = (server.data_dir / "bootstrap-token").read_text().strip()
        status, _ = await server.call("POST", "/auth/bootstrap", role=None,
                                      json={"token": token, "username": "admin", "password": ADMIN_PASSWORD})
        assert status == 201
        server.tokens["admin"] = await server.login("admin", ADMIN_PASSWORD)
        try:
            host_id, run = await enrolled_agent(server, tmp_path, repo)
            await server.call("PUT", f"/hosts/{host_id}/bandwidth", json={"upload_kbps": 400})
            await wait_for(lambda: run.agent.bandwidth.upload_kbps == 400, 10, "bandwidth applied")
            group = await make_group(server, host_id, src)
            _, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
            job_id = body["job"]["id"]
            await wait_for(lambda: (j := run.agent.runner.jobs.get(job_id)) is not None and j.pid is not None,
                           20, "restic running")
            await runner.cleanup()  # the server dies mid-job
            await wait_for(lambda: not run.agent.online, 10, "agent noticed")
            # the job goes on and ends while the server is away
            await wait_for(lambda: job_id not in run.agent.runner.jobs, 60, "job ended on the agent")
            assert run.agent.outbox.depth() > 0
            runner = await start_on_port(srv_dir, port, clock)
            job = await wait_for(lambda: job_done(server, job_id), 30, "result delivered after restart")
            assert job["state"] == "succeeded", job
            await wait_for(lambda: run.agent.outbox.depth() == 0, 10, "everything acked")
            lines = await all_logs(server, job_id)
            seqs = [ln["seq"] for ln in lines]
            assert seqs == list(range(2, len(lines) + 2)), "a gap or a duplicate in the log"
            assert any("saved" in ln["text"] for ln in lines)
        finally:
            if run:
                await run.close()
            await runner.cleanup()


async def test_fire_while_server_down_runs_and_is_reported_later(tmp_path: Path, repo: Path, source: Path) -> None:
    import socket

    import aiohttp

    from tests.conftest import ADMIN_PASSWORD, FakeClock

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock()
    srv_dir = tmp_path / "srv"
    runner = await start_on_port(srv_dir, port, clock)
    agent_clock = AgentClock()
    run = None
    async with aiohttp.ClientSession() as http:
        server = Server(f"http://127.0.0.1:{port}", None, http, srv_dir / "data", clock)  # type: ignore[arg-type]
        token = (server.data_dir / "bootstrap-token").read_text().strip()
        await server.call("POST", "/auth/bootstrap", role=None,
                          json={"token": token, "username": "admin", "password": ADMIN_PASSWORD})
        server.tokens["admin"] = await server.login("admin", ADMIN_PASSWORD)
        try:
            host_id, run = await enrolled_agent(server, tmp_path, repo, clock=agent_clock)
            group = await make_group(server, host_id, source)
            status, sched = await server.call("POST", f"/hosts/{host_id}/schedules", json={
                "name": "hourly", "cron": "0 * * * *", "timezone": "Europe/Berlin",
                "source_group_ids": [group["id"]]})
            assert status == 201, sched
            await wait_for(lambda: any(s.id == sched["id"] for s in run.agent.scheduler.current.schedules),
                           10, "schedule applied")
            await runner.cleanup()
            await wait_for(lambda: not run.agent.online, 10, "agent offline")
            agent_clock.now += timedelta(hours=1)
            assert await run.agent.scheduler.tick() == 1
            await wait_for(lambda: run.agent.outbox.depth() > 0 and not run.agent.runner.jobs, 30, "offline backup ran")
            assert await run.agent.scheduler.tick() == 0  # once per fire
            runner = await start_on_port(srv_dir, port, clock)

            async def scheduled_job():
                _, body = await server.call("GET", f"/jobs?host_id={host_id}&kind=backup")
                done = [j for j in body["jobs"] if j["state"] == "succeeded"]
                return done[0] if done else None

            job = await wait_for(scheduled_job, 30, "offline job reported")
            assert job["actor_kind"] == "schedule" and job["schedule_id"] == sched["id"]
            assert job["source_group_id"] == group["id"] and job["summary"]["snapshot_id"]
        finally:
            if run:
                await run.close()
            await runner.cleanup()


async def test_fire_while_connected_goes_through_the_server(server: Server, tmp_path: Path, repo: Path, source: Path) -> None:
    clock = AgentClock()
    host_id, run = await enrolled_agent(server, tmp_path, repo, clock=clock)
    try:
        group = await make_group(server, host_id, source)
        status, sched = await server.call("POST", f"/hosts/{host_id}/schedules", json={
            "name": "daily", "cron": "30 1 * * *", "source_group_ids": [group["id"]]})
        assert status == 201, sched
        await wait_for(lambda: any(s.id == sched["id"] for s in run.agent.scheduler.current.schedules),
                       10, "schedule applied")
        clock.now += timedelta(days=1)
        assert await run.agent.scheduler.tick() == 1

        async def scheduled():
            _, body = await server.call("GET", f"/jobs?host_id={host_id}&kind=backup")
            return [j for j in body["jobs"] if j["state"] == "succeeded"]

        (job,) = await wait_for(scheduled, 30, "server-made scheduled job")
        assert job["actor_kind"] == "schedule" and job["schedule_id"] == sched["id"]
        _, listing = await server.call("GET", f"/hosts/{host_id}/schedules")
        assert listing["applied_version"] == listing["version"]
    finally:
        await run.close()
