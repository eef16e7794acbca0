"""Recovering from a mistyped repository URL: after the first init fails against the wrong
address, correcting the URL starts a new init by itself, and backups then work — with or
without "generate password". Real server, real agent, real restic, a real REST server."""

from __future__ import annotations

from pathlib import Path

import pytest

from rm_agent.agent import Agent
from rm_agent.config import AgentConfig, load_config, save_config
from tests.conftest import Server, wait_for
from tests.processes import Proc, free_port

from .test_agent_server import AgentClock, Running, host_state, job_done, make_group

PASSWORD = "a typed repository password"


@pytest.fixture
def rest_server(tmp_path: Path):
    """`rclone serve restic` on port 0: the repository the operator meant."""
    proc = Proc(["rclone", "serve", "restic", str(tmp_path / "rest-data"), "--addr", "127.0.0.1:0"])
    url = proc.wait_line(r"Serving restic REST API on (http://\S+)").group(1)
    yield url.rstrip("/")
    proc.stop()


async def init_jobs(server: Server, host_id: str) -> list[dict]:
    status, body = await server.call("GET", f"/jobs?host_id={host_id}&kind=init")
    assert status == 200, body
    return body["jobs"]


async def start_agent(server: Server, tmp_path: Path, host_id: str, token: str) -> Running:
    cfg_path = tmp_path / "agent" / "agent.json"
    save_config(cfg_path, AgentConfig(server_url=server.url, host_id=host_id, agent_token=token))
    agent = Agent(load_config(cfg_path), cfg_path, clock=AgentClock(), hostname="typo-host")
    agent.first_connect_grace = 0.5
    run = Running(agent)
    await wait_for(lambda: run.task.done() or host_state(server, host_id, "online"), 15, "host online")
    assert not run.task.done()
    return run


@pytest.mark.parametrize("generate", [True, False], ids=["generate-password", "typed-password"])
async def test_a_corrected_url_is_initialised_and_backed_up(server: Server, tmp_path: Path, source: Path,
                                                           rest_server: str, generate: bool) -> None:
    host_id, token = await server.enroll("typo-host")
    wrong = f"rest:http://127.0.0.1:{free_port()}/typo-host/"  # the port mistyped: nothing listens there
    body = {"url": wrong, **({"generate_password": True} if generate else {"password": PASSWORD})}
    status, put = await server.call("PUT", f"/hosts/{host_id}/repo", json=body)
    assert status == 200, put
    run = await start_agent(server, tmp_path, host_id, token)
    try:
        (first,) = await wait_for(lambda: init_jobs(server, host_id), 15, "the first init job")
        first = await wait_for(lambda: job_done(server, first["id"]), 30, "the first init to end")
        assert first["state"] == "failed" and "unreachable" in first["error"], first

        group = await make_group(server, host_id, source)
        status, ran = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        failed = await wait_for(lambda: job_done(server, ran["job"]["id"]), 30, "a backup to the wrong URL")
        assert failed["state"] == "failed", failed

        body["url"] = f"rest:{rest_server}/typo-host/"
        status, put = await server.call("PUT", f"/hosts/{host_id}/repo", json=body)
        assert status == 200, put
        second = await wait_for(lambda: newer_init(server, host_id, first["id"]), 15, "an init after the fix")
        second = await wait_for(lambda: job_done(server, second["id"]), 30, "the second init to end")
        assert second["state"] == "succeeded", second
        assert second["summary"] == {"already_initialised": False}, second
        assert (tmp_path / "rest-data" / "typo-host" / "config").exists()

        status, ran = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        backup = await wait_for(lambda: job_done(server, ran["job"]["id"]), 30, "a backup to the right URL")
        assert backup["state"] == "succeeded", backup
    finally:
        await run.close()


async def newer_init(server: Server, host_id: str, than: str) -> dict | None:
    return next((j for j in await init_jobs(server, host_id) if j["id"] != than), None)
