"""A real failed backup (real agent, real restic) reaches new notification channels: a
json:// endpoint and a mail server, both real and local."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from rm_agent.agent import Agent
from rm_agent.config import AgentConfig, load_config, save_config
from tests.alert_receivers import json_receiver, smtp_receiver
from tests.conftest import FakeClock, Server, sign_in_roles, start_server, wait_for

from .test_agent_server import AgentClock, Running, host_state, job_done, make_group


async def test_a_real_failed_backup_reaches_new_channels(tmp_path: Path, repo: Path, source: Path) -> None:
    runner, url, app = await start_server(tmp_path, FakeClock(), alert_group_wait=0.2)
    async with aiohttp.ClientSession() as http, json_receiver() as hook, smtp_receiver() as mail:
        server = Server(url, app, http, tmp_path / "data", FakeClock())
        await sign_in_roles(server)
        for name, target in (("hook", hook.channel_url()), ("mail", mail.channel_url())):
            status, body = await server.call("POST", "/notification-channels", json={
                "name": name, "url": target, "events": ["backup.failed"]})
            assert status == 201, body
        host_id, token = await server.enroll("db-primary")
        # a password the repository does not have: the way a real backup fails after a bad rotation
        status, body = await server.call("PUT", f"/hosts/{host_id}/repo",
                                         json={"url": str(repo), "password": "not the repository's password"})
        assert status == 200, body
        cfg_path = tmp_path / "agent" / "agent.json"
        save_config(cfg_path, AgentConfig(server_url=url, host_id=host_id, agent_token=token))
        agent = Agent(load_config(cfg_path), cfg_path, clock=AgentClock(), hostname="db-primary")
        agent.first_connect_grace = 0.5
        run = Running(agent)
        try:
            await wait_for(lambda: host_state(server, host_id, "online"), 15, "host online")
            group = await make_group(server, host_id, source)
            status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
            assert status == 202, body
            job = await wait_for(lambda: job_done(server, body["job"]["id"]), 60, "backup finished")
            assert job["state"] == "failed" and "password" in job["error"], job
            await wait_for(lambda: hook.received and mail.messages, 15, "the alert at both channels")
            (digest,) = hook.received
            assert digest["title"] == "[restic-manager] db-primary: backup failed", digest
            assert host_id in digest["message"] and "password" in digest["message"], digest
            text = mail.text(0)
            assert "db-primary: backup failed" in text and "password" in text, text
        finally:
            await run.close()
            await runner.cleanup()
