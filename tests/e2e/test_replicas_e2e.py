"""Two rm-server replicas as real processes on one PostgreSQL database, a real agent that
knows both, real restic: the replica holding the agent is killed (SIGKILL) mid-backup, and
the job still ends `succeeded` with every log line once, reported through the other one
(issue 19)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rm_core.ids import new_id
from tests.e2e.test_agent_e2e import ADMIN_PASSWORD, BIN, PASSWORD, AgentProc, job_end, make_group, slow_source, wait_until
from tests.processes import Proc, free_port

pytestmark = pytest.mark.e2e


class Replica:
    def __init__(self, name: str, base: Path, database: str, key: Path) -> None:
        self.name, self.data = name, base / name
        self.env = {**os.environ, "RM_DATABASE_URL": database}  # never in argv
        self.key, self.port = key, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc([str(BIN / "rm-server"), "serve", "--data-dir", str(self.data), "--listen",
                          f"127.0.0.1:{self.port}", "--master-key-file", str(self.key)], env=self.env)
        self.proc.wait_line(r"rm-server listening on")

    def kill(self) -> None:
        if self.proc:
            self.proc.stop(signal.SIGKILL)

    async def agents_held(self, http: aiohttp.ClientSession) -> int:
        token = (self.data / "metrics-token").read_text().strip()
        async with http.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {token}"}) as r:
            m = re.search(r'^rm_ws_connections\{kind="agent"\} (\d+)', await r.text(), re.M)
            return int(m.group(1)) if m else 0


async def test_the_replica_holding_the_agent_dies_mid_backup_and_nothing_is_lost(tmp_path: Path, pg_cluster: Any) -> None:
    database = pg_cluster.create_database(f"e{new_id().lower()}")
    key = tmp_path / "master.key"
    a, b = Replica("a", tmp_path, database, key), Replica("b", tmp_path, database, key)
    a.start()  # the first makes the master key; the second is given the same file
    b.start()
    agent: AgentProc | None = None
    try:
        async with aiohttp.ClientSession() as http:
            async def call(r: Replica, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.request(method, f"{r.url}/api/v1{path}", headers=headers, **kw) as resp:
                    return resp.status, await resp.json()

            boot = (a.data / "bootstrap-token").read_text().strip()
            status, _ = await call(b, "POST", "/auth/bootstrap",  # any replica takes the token
                                   json={"token": boot, "username": "admin", "password": ADMIN_PASSWORD})
            assert status == 201
            _, body = await call(a, "POST", "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            admin = body["token"]
            repo = tmp_path / "repo"
            _, tok = await call(a, "POST", "/enrollment-tokens", admin,
                                json={"name": "e2e", "repo": {"url": str(repo), "password": PASSWORD}})
            config = tmp_path / "agent-state" / "agent.json"
            out = subprocess.run([str(BIN / "rm-agent"), "enroll", "--server", a.url, "--server", b.url,
                                  "--token", tok["token"], "--config", str(config)],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            host_id = json.loads(config.read_text())["host_id"]
            agent = AgentProc(config)
            agent.start()

            async def init_ok() -> bool:
                _, jobs = await call(a, "GET", f"/jobs?host_id={host_id}&kind=init", admin)
                return bool(jobs["jobs"]) and jobs["jobs"][0]["state"] == "succeeded"

            await wait_until(init_ok, 60, "automatic init succeeded")
            await call(a, "PUT", f"/hosts/{host_id}/bandwidth", admin, json={"upload_kbps": 500})
            group = await make_group(Caller(call, a, admin), host_id, slow_source(tmp_path / "src", files=40))
            _, run = await call(a, "POST", f"/hosts/{host_id}/source-groups/{group['id']}/run", admin)
            job_id = run["job"]["id"]

            async def running() -> bool:
                _, job = await call(a, "GET", f"/jobs/{job_id}", admin)
                return job["state"] == "running"

            await wait_until(running, 30, "backup running")
            holder, other = (a, b) if await a.agents_held(http) else (b, a)
            assert await holder.agents_held(http) == 1 and await other.agents_held(http) == 0
            holder.kill()
            await wait_until(lambda: other.agents_held(http), 60, "the agent reconnected to the other replica")
            job = await wait_until(lambda: job_end(Caller(call, other, admin), job_id), 120, "result delivered")
            assert job["state"] == "succeeded", job
            lines, after = [], 0
            while True:
                _, page = await call(other, "GET", f"/jobs/{job_id}/logs?after_seq={after}&limit=1000", admin)
                if not page["lines"]:
                    break
                lines += page["lines"]
                after = page["next_seq"]
            assert [ln["seq"] for ln in lines] == list(range(2, len(lines) + 2)), "every line once, no gap"
            assert sum("saved" in ln["text"] for ln in lines) == 1
            _, host = await call(other, "GET", f"/hosts/{host_id}", admin)
            assert host["status"] == "online"
    finally:
        if agent is not None:
            agent.kill(signal.SIGTERM)
        a.kill()
        b.kill()


class Caller:
    """The bits of E2EServer the shared helpers use (call), on one replica with a token."""

    def __init__(self, call: Any, replica: Replica, token: str) -> None:
        self._call, self.replica, self.token = call, replica, token

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        return await self._call(self.replica, method, path, self.token, **kw)
