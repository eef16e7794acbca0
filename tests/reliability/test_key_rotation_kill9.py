"""Key rotation survives kill -9 at each step: real rm-server and rm-agent processes, real
restic (0.14 and 0.18) on a local repository.

restic is reached through a gate: a wrapper script that, when told to, stops right before or
right after `restic key add` / `restic key remove` and says so with a file. The test kills the
agent (SIGKILL; its restic gets SIGINT from the agent's death and the gate exits without
running it), the server, or both, at that point, lets the gate go, starts again what it
killed, and then checks what matters: the rotation ends `done`, the agent's password (read from
its secrets.enc) opens the repository, the one before it no longer does, the repository has
exactly one key, and a backup through the server succeeds. The rotations run one after
another on one host, each starting from the last one's password."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rm_agent.config import load_config
from rm_agent.secrets import SecretStore
from rm_core.restic_keys import parse_keys
from tests.agent.test_restic_versions import RESTIC_018, MISSING_018
from tests.conftest import wait_for
from tests.processes import Proc, free_port

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
RESTIC_014 = "/usr/bin/restic"
ADMIN_PASSWORD = "correct horse battery"
FIRST_PASSWORD = "the password the repository started with"

GATE = """#!/bin/bash
# restic behind a gate: with GATE/pause-<point> present, wait there (saying so in GATE/at-<point>)
trap 'exit 130' INT TERM
point=""
case " $* " in *" key add "*) point=key-add ;; *" key remove "*) point=key-remove ;; esac
wait_at() {
  if [ -n "$point" ] && [ -e "{gate}/pause-$1" ]; then
    touch "{gate}/at-$1"
    while [ -e "{gate}/pause-$1" ]; do sleep 0.05; done
  fi
}
wait_at "$point"
"{restic}" "$@"
rc=$?
wait_at "after-$point"
exit $rc
"""


@dataclass
class Rig:
    tmp: Path
    restic: str
    port: int = 0
    server: Proc | None = None
    agent: Proc | None = None
    http: aiohttp.ClientSession | None = None
    token: str = ""
    host_id: str = ""
    config: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gate(self) -> Path:
        return self.tmp / "gate"

    def start_server(self) -> None:
        self.server = Proc([str(BIN / "rm-server"), "serve", "--data-dir", str(self.tmp / "server"),
                            "--listen", f"127.0.0.1:{self.port}"])
        self.server.wait_line(r"listening on http://")

    def start_agent(self) -> None:
        assert self.config
        self.agent = Proc([str(BIN / "rm-agent"), "run", "--config", str(self.config)])

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        assert self.http
        async with self.http.request(method, f"{self.url}/api/v1{path}",
                                     headers={"Authorization": f"Bearer {self.token}"}, **kw) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else await r.text())

    async def online(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            status, host = await self.call("GET", f"/hosts/{self.host_id}")
            return status == 200 and host["status"] == "online"
        return False

    def agent_password(self) -> str:
        assert self.config
        cfg = load_config(self.config)
        creds = SecretStore(self.config.parent / "secrets.enc", cfg.key_bytes()).load()
        password = creds["repo"].password
        assert password
        return password

    def keys(self, password: str) -> list[dict[str, Any]] | None:
        pw = self.tmp / f"pw-{time.monotonic_ns()}"
        pw.write_text(password)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env.update(RESTIC_REPOSITORY=str(self.tmp / "repo"), RESTIC_PASSWORD_FILE=str(pw))
        res = subprocess.run([self.restic, "--no-lock", "key", "list", "--json"], env=env, capture_output=True,
                             text=True, timeout=120, stdin=subprocess.DEVNULL)
        pw.unlink()
        return parse_keys(res.stdout) if res.returncode == 0 else None

    def agent_idle(self) -> bool:
        """The agent runs no job (it ended the phase; its report may wait in the outbox)."""
        assert self.config
        out = subprocess.run([str(BIN / "rm-agent"), "status", "--config", str(self.config), "--json"],
                             capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and json.loads(out.stdout)["running_jobs"] == []

    async def job_end(self, job_id: str) -> dict[str, Any] | None:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            _, job = await self.call("GET", f"/jobs/{job_id}")
            return job if job["state"] in ("succeeded", "warning", "failed", "cancelled", "lost") else None
        return None

    async def rotation(self) -> dict[str, Any] | None:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            status, body = await self.call("GET", f"/hosts/{self.host_id}/repo/rotate-key")
            return body if status == 200 else None
        return None


@pytest.fixture(params=["0.14", "0.18"])
async def rig(request, tmp_path: Path) -> AsyncIterator[Rig]:
    real = RESTIC_014 if request.param == "0.14" else RESTIC_018
    if real is None:
        pytest.skip(MISSING_018)
    rig = Rig(tmp_path, real, free_port())
    rig.gate.mkdir()
    wrapper = tmp_path / "restic-gate"
    wrapper.write_text(GATE.replace("{gate}", str(rig.gate)).replace("{restic}", real))
    wrapper.chmod(0o755)
    rig.start_server()
    async with aiohttp.ClientSession() as http:
        rig.http = http
        try:
            token = (tmp_path / "server" / "bootstrap-token").read_text().strip()
            async with http.post(f"{rig.url}/api/v1/auth/bootstrap", json={
                    "token": token, "username": "admin", "password": ADMIN_PASSWORD}) as r:
                assert r.status == 201, await r.text()
            async with http.post(f"{rig.url}/api/v1/auth/login", json={
                    "username": "admin", "password": ADMIN_PASSWORD}) as r:
                rig.token = (await r.json())["token"]
            status, tok = await rig.call("POST", "/enrollment-tokens", json={"name": "kill9"})
            assert status == 201, tok
            rig.config = tmp_path / "agent" / "agent.json"
            out = subprocess.run([str(BIN / "rm-agent"), "enroll", "--server", rig.url, "--token", tok["token"],
                                  "--config", str(rig.config)], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            cfg = json.loads(rig.config.read_text())
            cfg.update(restic_binary=str(wrapper), cancel_grace_seconds=5)
            rig.config.write_text(json.dumps(cfg))
            rig.host_id = cfg["host_id"]
            rig.start_agent()
            await wait_for(rig.online, 30, "host online")
            status, body = await rig.call("PUT", f"/hosts/{rig.host_id}/repo",
                                          json={"url": str(tmp_path / "repo"), "password": FIRST_PASSWORD})
            assert status == 200, body

            async def initialised() -> bool:
                _, body = await rig.call("GET", f"/jobs?host_id={rig.host_id}&kind=init")
                return bool(body["jobs"]) and body["jobs"][0]["state"] == "succeeded"

            await wait_for(initialised, 60, "repository initialised")
            yield rig
        finally:
            for proc in (rig.agent, rig.server):
                if proc is not None:
                    proc.stop(signal.SIGKILL)


async def backup_works(rig: Rig, src: Path) -> None:
    status, groups = await rig.call("GET", f"/hosts/{rig.host_id}/source-groups")
    if not groups["source_groups"]:
        status, group = await rig.call("POST", f"/hosts/{rig.host_id}/source-groups",
                                       json={"name": "data", "includes": [str(src)], "tag": "data"})
        assert status == 201, group
        groups = {"source_groups": [group]}
    status, body = await rig.call("POST", f"/hosts/{rig.host_id}/source-groups/{groups['source_groups'][0]['id']}/run")
    assert status == 202, body
    job = await wait_for(lambda: rig.job_end(body["job"]["id"]), 90, "backup after the rotation")
    assert job["state"] == "succeeded", job


# (where the gate stops restic, what is killed there)
STEPS = [
    ("key-add", "agent"),  # before the new key exists
    ("after-key-add", "agent"),  # the key is added, the agent never reports it
    ("after-key-add", "server"),  # the agent reports into a dead server; it comes back
    ("after-key-add", "both"),
    ("key-remove", "server"),  # committed: the server dies before the old key goes
    ("key-remove", "agent"),
    ("after-key-remove", "agent"),  # the old key is gone, the agent never reports it
    ("after-key-remove", "both"),
]


async def test_a_rotation_killed_at_each_step_finishes(rig: Rig, tmp_path: Path) -> None:
    # Every step is killed on one restic version or the other, by turns (each is ~14 s of real
    # processes: all eight on both was 230 s of the suite's time); both versions rotate.
    steps = STEPS[0::2] if rig.restic == RESTIC_014 else STEPS[1::2]
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(10_000))
    await backup_works(rig, src)
    before = FIRST_PASSWORD
    assert rig.keys(before) is not None and len(rig.keys(before) or []) == 1
    for point, kill in steps:
        what = f"{point}/{kill}"
        pause = rig.gate / f"pause-{point}"
        reached = rig.gate / f"at-{point}"
        reached.unlink(missing_ok=True)
        pause.touch()
        status, body = await rig.call("POST", f"/hosts/{rig.host_id}/repo/rotate-key", json={})
        assert status == 202, (what, body)
        await wait_for(reached.exists, 90, f"{what}: restic reached the gate")
        if kill in ("agent", "both"):
            assert rig.agent
            rig.agent.stop(signal.SIGKILL)
        if kill in ("server", "both"):
            assert rig.server
            rig.server.stop(signal.SIGKILL)
        pause.unlink()
        if kill == "server":  # the agent finishes the phase and reports into the dead server
            await wait_for(rig.agent_idle, 90, f"{what}: the agent ended the phase")
        if kill in ("server", "both"):
            rig.start_server()
        if kill in ("agent", "both"):
            rig.start_agent()
        await wait_for(rig.online, 60, f"{what}: host online again")

        async def done() -> bool:
            rot = await rig.rotation()
            return rot is not None and rot["id"] == body["id"] and rot["state"] == "done"

        await wait_for(done, 120, f"{what}: rotation done")
        _, jobs = await rig.call("GET", f"/jobs?host_id={rig.host_id}&kind=rotate_key&limit=1000")
        mine = [j for j in jobs["jobs"] if j["params"].get("rotation_id") == body["id"]]
        lost = [j["params"]["phase"] for j in mine if j["state"] == "lost"]
        phase = "add" if point.endswith("add") else "remove"
        # the kill hit the phase: an agent killed there lost its job, which ran again
        assert lost == ([phase] if kill in ("agent", "both") else []), (what, [(j["params"], j["state"]) for j in mine])
        now = rig.agent_password()
        assert now != before, what
        listed = rig.keys(now)
        assert listed is not None and len(listed) == 1, (what, listed)
        assert rig.keys(before) is None, f"{what}: the old password still opens the repository"
        await backup_works(rig, src)
        before = now
