"""docs/operations.md, "Backing up PostgreSQL": the dump and restore commands exactly as the
doc shows them (read from the doc; only the database host and the dump's folder are this
test's), against a real cluster. A server started on the restored database with the same
master key has its operators, hosts and sealed repository credentials back."""

from __future__ import annotations

import glob
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.conftest import ADMIN_PASSWORD, FakeClock, Server, TestAgent, sign_in_roles, start_server
from tests.pgcluster import USER, pg_bin

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
REPO_PASSWORD = "dump and restore me"


def documented() -> dict[str, str]:
    """The section's three commands (pg_dump, createdb, pg_restore), as written."""
    section = DOC.read_text().split("### Backing up PostgreSQL", 1)[1].split("\n### ", 1)[0]
    spans = re.findall(r"`([^`]+)`", section)
    found = {tool: next(s for s in spans if s.startswith(tool + " ")) for tool in ("pg_dump", "createdb", "pg_restore")}
    assert "db1.example.com:5432" in found["pg_dump"] and "/root/" in found["pg_dump"], found
    return found


async def server(base: Path, url: str, key: Path) -> tuple[Any, Server]:
    clock = FakeClock()
    runner, public, app = await start_server(base, clock, database_url=url, master_key_file=key)
    return runner, Server(public, app, aiohttp.ClientSession(), base / "data", clock)


async def test_the_documented_dump_restores_into_a_database_a_server_serves(tmp_path: Path, pg_cluster: Any) -> None:
    commands = documented()
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:  # the doc's names, in this worker's cluster
        for name in ("rm_restored", "rm"):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    url = pg_cluster.create_database("rm")
    key = tmp_path / "master.key"

    runner, srv = await server(tmp_path / "old", url, key)
    try:
        await sign_in_roles(srv)
        status, body = await srv.call("POST", "/operators", json={"username": "dora", "password": "correct horse battery",
                                                                  "role": "operator"})
        assert status == 201, body
        host_id, token = await srv.enroll("db-1")
        status, body = await srv.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                      json={"url": "/srv/restic/db-1", "password": REPO_PASSWORD})
        assert status == 200, body
    finally:
        await srv.http.close()
        await runner.cleanup()

    # Run as the doc shows, on the database's machine (createdb takes the host from PG* there).
    bin_dir = pg_bin()
    assert bin_dir is not None
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PGHOST": "127.0.0.1",
           "PGPORT": str(pg_cluster.port), "PGUSER": USER}

    def run(line: str) -> None:
        line = line.replace("db1.example.com:5432", f"127.0.0.1:{pg_cluster.port}").replace("/root/", f"{tmp_path}/")
        done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (line, done.stderr)

    run(commands["pg_dump"])
    (dump,) = glob.glob(str(tmp_path / "rm-*.dump"))  # the doc's $(date +%F)
    run(commands["createdb"])
    run(commands["pg_restore"].replace("rm-DATE.dump", Path(dump).name))

    restored = pg_cluster.url("rm_restored")
    runner, srv = await server(tmp_path / "new", restored, key)
    try:
        assert await srv.login("admin", ADMIN_PASSWORD)
        assert await srv.login("dora", "correct horse battery")
        agent = TestAgent(srv, token)  # the agent's token is a row too
        assert (await agent.connect()).type == "hello.ok"
        await agent.expect("schedule.set")
        update = await agent.expect("config.update")  # unsealed with the same master key
        (repo,) = [c for c in update.payload.credentials if c.slot == "repo"]
        assert repo.password == REPO_PASSWORD and repo.url == "/srv/restic/db-1"
        await agent.close()
    finally:
        await srv.http.close()
        await runner.cleanup()
