"""An agent with several server URLs, as real processes: enrolled while one URL is dead, it
connects to the live server; when that server is killed it moves to the other URL.

Until PostgreSQL replicas land, "server B" is a second rm-server on the same data dir (same
agent tokens, same self-signed certificate, so the one pinned fingerprint holds for both),
started on B's URL after A is killed: what the agent sees is a replica dying and another
one answering.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.processes import Proc, free_port

from .test_agent_e2e import ADMIN_PASSWORD, BIN, E2EServer, wait_until

pytestmark = pytest.mark.e2e


def status(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "rm-agent"), "status", "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=30, check=True)


def status_json(config: Path) -> dict:
    return json.loads(status(config, "--json").stdout)


async def sign_in(srv: E2EServer, bootstrap: bool) -> None:
    if bootstrap:
        token = (srv.data_dir / "bootstrap-token").read_text().strip()
        code, body = await srv.call("POST", "/auth/bootstrap",
                                    json={"token": token, "username": "admin", "password": ADMIN_PASSWORD})
        assert code == 201, body
    srv.token = ""
    code, body = await srv.call("POST", "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert code == 200, body
    srv.token = body["token"]


async def test_agent_moves_to_the_other_url_when_its_server_dies(tmp_path: Path) -> None:
    data = tmp_path / "server-data"
    a = E2EServer(data, free_port())
    b = E2EServer(data, free_port())
    url_b = f"https://127.0.0.1:{b.port}"
    closed = socket.socket()  # a third URL where nothing will ever listen
    closed.bind(("127.0.0.1", 0))
    url_closed = f"https://127.0.0.1:{closed.getsockname()[1]}"
    agent: Proc | None = None
    async with aiohttp.ClientSession() as http:
        a.http = b.http = http
        try:
            a.start()
            await sign_in(a, bootstrap=True)
            code, tok = await a.call("POST", "/enrollment-tokens", json={"name": "failover"})
            assert code == 201, tok
            config = tmp_path / "agent" / "agent.json"
            # B is not up yet and the closed port never is: enrollment tries the URLs in
            # random order and gets through A whatever the order.
            out = subprocess.run(
                [str(BIN / "rm-agent"), "enroll", "--server", url_b, "--server", f"{url_closed},{a.url}",
                 "--token", tok["token"], "--fingerprint", a.fingerprint, "--config", str(config)],
                capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert f"through {a.url}" in out.stdout
            cfg = json.loads(config.read_text())
            assert cfg["server_urls"] == [url_b, url_closed, a.url] and cfg["server_url"] == url_b

            agent = Proc([str(BIN / "rm-agent"), "run", "--config", str(config), "-v"])
            st = await wait_until(lambda: (s := status_json(config))["state"] == "connected" and s, 60,
                                  "agent connected to A")
            assert st["server_url"] == a.url and st["server_urls"] == [url_b, url_closed, a.url]
            shown = status(config).stdout
            assert f"{a.url} (connected)" in shown and url_b in shown and url_closed in shown

            a.stop(signal.SIGKILL)
            b.start()
            assert b.fingerprint == a.fingerprint  # one certificate, one pin, both URLs
            await wait_until(lambda: (s := status_json(config))["state"] == "connected" and s["server_url"] == url_b,
                             60, "agent connected to B")
            await sign_in(b, bootstrap=False)

            async def online_on_b() -> bool:
                _, host = await b.call("GET", f"/hosts/{cfg['host_id']}")
                return host["status"] == "online"

            await wait_until(online_on_b, 30, "host online on B")
            assert f"{url_b} (connected)" in status(config).stdout
            # the agent said where it went, and never got through to the closed port
            assert any(f"connected to {url_b}" in line for line in agent.lines)
            assert not any(f"connected to {url_closed}" in line for line in agent.lines)
        finally:
            if agent:
                agent.stop()
            a.stop(signal.SIGKILL)
            b.stop(signal.SIGTERM)
            closed.close()


def test_enroll_names_every_url_it_could_not_reach(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    out = subprocess.run([str(BIN / "rm-agent"), "enroll", "--token", "rme_x", "--config", str(tmp_path / "a.json"),
                          "--server", f"http://127.0.0.1:{ports[0]}", "--server", f"http://127.0.0.1:{ports[1]}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "cannot reach any of the 2 server URLs" in out.stderr
    for port in ports:
        assert f"cannot connect to 127.0.0.1:{port}" in out.stderr
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize("value, said", [("ftp://h:1", "must start with http:// or https://"),
                                         ("https://h:99999", "invalid port"),
                                         ("https://", "names no host")])
def test_enroll_refuses_a_bad_url_by_name(tmp_path: Path, value: str, said: str) -> None:
    out = subprocess.run([str(BIN / "rm-agent"), "enroll", "--token", "rme_x", "--config", str(tmp_path / "a.json"),
                          "--server", "http://127.0.0.1:1", "--server", value],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and said in out.stderr and repr(value) in out.stderr, out.stderr
