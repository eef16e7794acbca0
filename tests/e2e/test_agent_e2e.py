"""Real rm-server and rm-agent processes against real restic repositories.

Local directory repository and a REST repository served by `rclone serve restic` with
an htpasswd file; the server runs with a self-signed certificate the agent pins.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest

from tests.conftest import wait_for
from tests.processes import Proc, free_port

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
RESTIC = shutil.which("restic") or "/usr/bin/restic"
PASSWORD = "e2e repo password 1"
ADMIN_PASSWORD = "correct horse battery"


@dataclass
class E2EServer:
    data_dir: Path
    port: int
    proc: Proc | None = None
    url: str = ""
    fingerprint: str = ""
    http: aiohttp.ClientSession | None = None
    token: str = ""

    def start(self) -> None:
        self.proc = Proc([str(BIN / "rm-server"), "serve", "--data-dir", str(self.data_dir),
                          "--listen", f"127.0.0.1:{self.port}", "--self-signed"])
        self.fingerprint = self.proc.wait_line(r"fingerprint: ([0-9a-f]{64})").group(1)
        self.url = self.proc.wait_line(r"listening on (https://\S+)").group(1)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc:
            self.proc.stop(sig)

    @property
    def ssl(self) -> aiohttp.Fingerprint:
        return aiohttp.Fingerprint(bytes.fromhex(self.fingerprint))

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        assert self.http
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, f"{self.url}/api/v1{path}", headers=headers, ssl=self.ssl, **kw) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def wait_until(pred, timeout: float = 30, what: str = "condition") -> Any:
    """wait_for with the longer default real processes need."""
    return await wait_for(pred, timeout, what)


@pytest.fixture
async def e2e_server(tmp_path: Path) -> AsyncIterator[E2EServer]:
    srv = E2EServer(tmp_path / "server-data", free_port())
    srv.start()
    async with aiohttp.ClientSession() as http:
        srv.http = http
        token = (srv.data_dir / "bootstrap-token").read_text().strip()
        status, body = await srv.call("POST", "/auth/bootstrap",
                                      json={"token": token, "username": "admin", "password": ADMIN_PASSWORD})
        assert status == 201, body
        status, body = await srv.call("POST", "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        srv.token = body["token"]
        try:
            yield srv
        finally:
            srv.stop()


@dataclass
class Repo:
    url: str
    creds: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    def restic(self, tmp: Path, *args: str) -> subprocess.CompletedProcess:
        pw = tmp / "test-pw"
        pw.write_text(PASSWORD)
        pw.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env.update(self.env, RESTIC_PASSWORD_FILE=str(pw))
        return subprocess.run([RESTIC, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120)


@pytest.fixture(params=["local", "rest"])
def repo(request, tmp_path: Path) -> Iterator[Repo]:
    if request.param == "local":
        path = tmp_path / "repo-local"
        yield Repo(str(path), {"url": str(path), "password": PASSWORD}, {"RESTIC_REPOSITORY": str(path)})
        return
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("backup:" + bcrypt.hashpw(b"rest-secret-9", bcrypt.gensalt(rounds=4)).decode() + "\n")
    env = dict(os.environ, RCLONE_CONFIG="/dev/null")
    rclone = Proc(["rclone", "serve", "restic", str(tmp_path / "rest-data"), "--addr", "127.0.0.1:0",
                   "--htpasswd", str(htpasswd)], env=env)
    try:
        base = rclone.wait_line(r"Serving restic REST API on (http://\S+)").group(1)
        url = f"rest:{base.rstrip('/')}/repo/"
        authed = url.replace("http://", "http://backup:rest-secret-9@")
        yield Repo(url, {"url": url, "password": PASSWORD, "rest_user": "backup", "rest_password": "rest-secret-9"},
                   {"RESTIC_REPOSITORY": authed})
    finally:
        rclone.stop()


class AgentProc:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc([str(BIN / "rm-agent"), "run", "--config", str(self.config)])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc:
            self.proc.stop(sig)

    def status(self) -> dict:
        out = subprocess.run([str(BIN / "rm-agent"), "status", "--config", str(self.config), "--json"],
                             capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)


async def enroll_agent(srv: E2EServer, repo: Repo, tmp_path: Path) -> tuple[str, AgentProc]:
    status, tok = await srv.call("POST", "/enrollment-tokens", json={"name": "e2e", "repo": repo.creds})
    assert status == 201, tok
    config = tmp_path / "agent-state" / "agent.json"
    fp_colons = ":".join(srv.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    out = subprocess.run([str(BIN / "rm-agent"), "enroll", "--server", srv.url, "--token", tok["token"],
                          "--fingerprint", fp_colons, "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    cfg = json.loads(config.read_text())
    assert cfg["fingerprint"] == srv.fingerprint and cfg["agent_token"] not in out.stdout
    agent = AgentProc(config)
    agent.start()

    async def online():
        _, host = await srv.call("GET", f"/hosts/{cfg['host_id']}")
        return host["status"] == "online"

    await wait_until(online, 30, "host online")
    return cfg["host_id"], agent


async def job_end(srv: E2EServer, job_id: str) -> dict | None:
    _, job = await srv.call("GET", f"/jobs/{job_id}")
    return job if job["state"] in ("succeeded", "warning", "failed", "cancelled", "lost") else None


async def logs(srv: E2EServer, job_id: str) -> list[dict]:
    lines, after = [], 0
    while True:
        _, page = await srv.call("GET", f"/jobs/{job_id}/logs?after_seq={after}&limit=1000")
        if not page["lines"]:
            return lines
        lines += page["lines"]
        after = page["next_seq"]


async def init_done(srv: E2EServer, host_id: str) -> None:
    async def done():
        _, body = await srv.call("GET", f"/jobs?host_id={host_id}&kind=init")
        return body["jobs"] and body["jobs"][0]["state"] == "succeeded"

    await wait_until(done, 60, "automatic init succeeded")


async def make_group(srv: E2EServer, host_id: str, src: Path, name: str = "data") -> dict:
    status, group = await srv.call("POST", f"/hosts/{host_id}/source-groups",
                                   json={"name": name, "includes": [str(src)], "tag": name, "retention": {"keep_last": 5}})
    assert status == 201, group
    return group


def slow_source(root: Path, files: int = 30, size: int = 64 << 10) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:02d}").write_bytes(os.urandom(size))
    return root


async def test_enroll_backup_restore_cancel_and_agent_death(e2e_server: E2EServer, repo: Repo, tmp_path: Path) -> None:
    srv = e2e_server
    host_id, agent = await enroll_agent(srv, repo, tmp_path)
    try:
        await init_done(srv, host_id)
        src = tmp_path / "src"
        (src / "d").mkdir(parents=True)
        (src / "d" / "blob").write_bytes(os.urandom(200_000))
        (src / "note.txt").write_text("hello\n")
        group = await make_group(srv, host_id, src)

        # backup -> succeeded with summary, and restic itself lists the snapshot
        _, body = await srv.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        job = await wait_until(lambda: job_end(srv, body["job"]["id"]), 60, "backup finished")
        assert job["state"] == "succeeded", job
        snap = job["summary"]["snapshot_id"]
        assert job["summary"]["files_new"] == 2
        listed = json.loads(repo.restic(tmp_path, "snapshots", "--json").stdout)
        assert [s["short_id"] for s in listed] == [snap[:8]] and listed[0]["tags"] == ["data"]
        all_text = "\n".join(ln["text"] for ln in await logs(srv, job["id"]))
        assert PASSWORD not in all_text and "rest-secret-9" not in all_text

        # restore -> identical bytes
        target = tmp_path / "restored"
        status, rjob = await srv.call("POST", f"/hosts/{host_id}/jobs", json={
            "kind": "restore", "snapshot_id": snap, "paths": [str(src)], "target": str(target)})
        assert status == 202, rjob
        rjob = await wait_until(lambda: job_end(srv, rjob["id"]), 60, "restore finished")
        assert rjob["state"] == "succeeded", rjob
        back = target / str(src).lstrip("/")
        assert (back / "d" / "blob").read_bytes() == (src / "d" / "blob").read_bytes()
        assert (back / "note.txt").read_text() == "hello\n"

        st = await wait_until(lambda: (s := agent.status())["outbox_depth"] == 0 and s, 20, "outbox drained")
        assert st["state"] == "connected" and st["running_jobs"] == []

        # cancel mid-backup -> cancelled, no lock left
        await srv.call("PUT", f"/hosts/{host_id}/bandwidth", json={"upload_kbps": 100})
        slow = slow_source(tmp_path / "slow", files=40)
        sgroup = await make_group(srv, host_id, slow, "slow")
        _, body = await srv.call("POST", f"/hosts/{host_id}/source-groups/{sgroup['id']}/run")
        cjob_id = body["job"]["id"]

        async def running():
            _, j = await srv.call("GET", f"/jobs/{cjob_id}")
            return j["state"] == "running"

        await wait_until(running, 30, "slow backup running")
        await wait_until(lambda: repo.restic(tmp_path, "--no-lock", "list", "locks").stdout.strip(), 30, "lock taken")
        status, _ = await srv.call("POST", f"/jobs/{cjob_id}/cancel")
        assert status == 202
        cjob = await wait_until(lambda: job_end(srv, cjob_id), 45, "cancelled")
        assert cjob["state"] == "cancelled", cjob
        assert repo.restic(tmp_path, "--no-lock", "list", "locks").stdout.strip() == ""

        # agent killed mid-job -> lost after it comes back
        _, body = await srv.call("POST", f"/hosts/{host_id}/source-groups/{sgroup['id']}/run")
        kjob_id = body["job"]["id"]

        async def running_k():
            _, j = await srv.call("GET", f"/jobs/{kjob_id}")
            return j["state"] == "running"

        await wait_until(running_k, 30, "second slow backup running")
        agent.kill(signal.SIGKILL)
        agent.start()
        kjob = await wait_until(lambda: job_end(srv, kjob_id), 45, "lost job reported")
        assert kjob["state"] == "lost", kjob
        assert "unlock" in (kjob["error"] or "")
        status, ujob = await srv.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "unlock"})
        ujob = await wait_until(lambda: job_end(srv, ujob["id"]), 60, "unlock finished")
        assert ujob["state"] == "succeeded", ujob
        assert repo.restic(tmp_path, "--no-lock", "list", "locks").stdout.strip() == ""
    finally:
        agent.kill(signal.SIGTERM)


async def test_server_killed_and_restarted_mid_job_every_line_once(e2e_server: E2EServer, tmp_path: Path) -> None:
    srv = e2e_server
    path = tmp_path / "repo"
    repo = Repo(str(path), {"url": str(path), "password": PASSWORD}, {"RESTIC_REPOSITORY": str(path)})
    host_id, agent = await enroll_agent(srv, repo, tmp_path)
    try:
        await init_done(srv, host_id)
        await srv.call("PUT", f"/hosts/{host_id}/bandwidth", json={"upload_kbps": 500})
        src = slow_source(tmp_path / "src", files=40)
        group = await make_group(srv, host_id, src)
        _, body = await srv.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        job_id = body["job"]["id"]

        async def running():
            _, j = await srv.call("GET", f"/jobs/{job_id}")
            return j["state"] == "running"

        await wait_until(running, 30, "backup running")
        srv.stop(signal.SIGKILL)
        await wait_until(lambda: agent.status()["state"] == "disconnected", 20, "agent noticed the server died")
        await wait_until(lambda: (s := agent.status())["running_jobs"] == [] and s["outbox_depth"] > 0, 90,
                         "job finished while the server was away")
        srv.start()
        job = await wait_until(lambda: job_end(srv, job_id), 90, "result delivered")
        assert job["state"] == "succeeded", job
        lines = await logs(srv, job_id)
        assert [ln["seq"] for ln in lines] == list(range(2, len(lines) + 2))
        assert sum("saved" in ln["text"] for ln in lines) == 1
        await wait_until(lambda: agent.status()["outbox_depth"] == 0, 30, "all acked")
    finally:
        agent.kill(signal.SIGTERM)


async def test_enroll_refuses_a_wrong_fingerprint(e2e_server: E2EServer, tmp_path: Path) -> None:
    srv = e2e_server
    status, tok = await srv.call("POST", "/enrollment-tokens", json={"name": "e2e"})
    assert status == 201
    config = tmp_path / "agent.json"
    out = subprocess.run([str(BIN / "rm-agent"), "enroll", "--server", srv.url, "--token", tok["token"],
                          "--fingerprint", "00" * 32, "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "fingerprint mismatch" in out.stderr
    assert srv.fingerprint in out.stderr and not config.exists()
