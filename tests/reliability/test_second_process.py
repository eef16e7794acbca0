"""A second process that reads the live database (the admin CLI, `backup-db`) never costs the
running server a write it acknowledged (issue 18 item 1: SQLite's "how to corrupt" §2.2 —
closing any descriptor of the database file drops every POSIX lock the process holds)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.processes import free_port
from tests.reliability.kill9 import ADMIN_PASSWORD, BIN, ServerProc, _api

pytestmark = pytest.mark.e2e


def cli(*args: str) -> str:
    done = subprocess.run([str(BIN / "rm-server"), *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_admin_cli_while_the_server_runs_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProc(data, free_port())
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            boot = (data / "bootstrap-token").read_text().strip()
            status, _ = await _api(http, server.url, "POST", "/auth/bootstrap",
                                   json={"token": boot, "username": "admin", "password": ADMIN_PASSWORD})
            assert status == 201

            async def admin() -> str:
                _, body = await _api(http, server.url, "POST", "/auth/login",
                                     json={"username": "admin", "password": ADMIN_PASSWORD})
                return body["token"]

            async def add(name: str) -> None:
                status, body = await _api(http, server.url, "POST", "/operators", await admin(),
                                          json={"username": name, "password": ADMIN_PASSWORD, "role": "viewer"})
                assert status == 201, body

            await add("one")
            server.kill(signal.SIGKILL)
            assert "one" in cli("operator", "list", "--data-dir", str(data))  # while it is down
            await server.start()
            assert "one" in cli("operator", "list", "--data-dir", str(data))  # while it runs
            cli("backup-db", str(tmp_path / "copy.db"), "--data-dir", str(data))
            await add("three")
            # The server still holds its WAL: another process sees the acknowledged write.
            assert (data / "server.db-wal").exists()
            assert "three" in cli("operator", "list", "--data-dir", str(data))
            server.kill(signal.SIGKILL)
            await server.start()
            status, ops = await _api(http, server.url, "GET", "/operators", await admin())
            assert status == 200
            assert {"admin", "one", "three"} <= {o["username"] for o in ops["operators"]}
    finally:
        server.kill(signal.SIGKILL)
