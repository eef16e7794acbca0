"""The admin commands on the replicas' PostgreSQL (issue 19): `operator …` and `host …` with
--database or RM_DATABASE_URL, while a server runs on the same database and sees the change at
once; `backup-db` there says to use pg_dump; a password on the command line is warned about and
never printed back. Real commands, a real server on port 0, a real throwaway PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from rm_core.ids import new_id
from tests.conftest import FakeClock, Server, sign_in_roles, start_server

BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery"


def rm(*args: str, data_dir: Path, url: str | None = None, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RM_DATA_DIR": str(data_dir)}
    env.pop("RM_DATABASE_URL", None)
    env.pop("RM_OPERATOR_PASSWORD", None)
    if url is not None:
        env["RM_DATABASE_URL"] = url
    if password is not None:
        env["RM_OPERATOR_PASSWORD"] = password
    return subprocess.run([str(BIN / "rm-server"), *args], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


async def test_operator_and_host_commands_reach_the_running_servers_database(tmp_path, pg_cluster):
    url = pg_cluster.create_database(f"a{new_id().lower()}")
    runner, base, app = await start_server(tmp_path / "replica", FakeClock(), database_url=url)
    srv = Server(base, app, aiohttp.ClientSession(), tmp_path / "replica" / "data", FakeClock())
    elsewhere = tmp_path / "admin-home"  # not the server's data dir: the commands go to PostgreSQL
    try:
        await sign_in_roles(srv)
        host_id, _ = await srv.enroll("web-1")

        def run(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
            return rm(*args, data_dir=elsewhere, url=url, password=password)

        added = await asyncio.to_thread(run, "operator", "add", "alice", "--role", "operator", password=PASSWORD)
        assert added.returncode == 0, added.stderr
        assert await srv.login("alice", PASSWORD), "the running server signs in the operator the command made"
        listed = await asyncio.to_thread(run, "operator", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        status, answered = await srv.call("GET", "/operators")
        assert json.loads(listed.stdout) == answered and "alice" in listed.stdout

        hosts = await asyncio.to_thread(run, "host", "list")
        assert hosts.returncode == 0 and host_id in hosts.stdout and "web-1" in hosts.stdout, hosts
        removed = await asyncio.to_thread(run, "host", "remove", host_id)
        assert removed.returncode == 0, removed.stderr
        status, _ = await srv.call("GET", f"/hosts/{host_id}")
        assert status == 404

        disabled = await asyncio.to_thread(run, "operator", "disable", "alice")
        assert disabled.returncode == 0, disabled.stderr
        status, _ = await srv.call("POST", "/auth/login", role=None, json={"username": "alice", "password": PASSWORD})
        assert status == 401
        _, audit = await srv.call("GET", "/audit?limit=50")
        assert {"operator.create", "host.delete"} <= {e["action"] for e in audit["entries"]}, audit
        assert not elsewhere.exists(), "nothing was made in the data dir: the database is PostgreSQL"
    finally:
        await srv.http.close()
        await runner.cleanup()


def test_a_password_on_the_command_line_is_warned_about_and_never_printed(tmp_path, pg_cluster):
    url = pg_cluster.create_database(f"a{new_id().lower()}")
    # trust authentication ignores the password: the command works, and says where it belongs
    with_password = url.replace("postgresql://rm@", "postgresql://rm:s3cret-pw@")
    done = rm("operator", "add", "bob", "--role", "admin", "--database", with_password, data_dir=tmp_path,
              password=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "password is on the command line" in done.stderr and "~/.pgpass" in done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    # from the environment: no warning
    listed = rm("operator", "list", data_dir=tmp_path, url=with_password)
    assert listed.returncode == 0 and "bob" in listed.stdout and "warning" not in listed.stderr

    down = with_password.replace(f":{pg_cluster.port}/", ":1/")  # nothing listens there
    failed = rm("host", "list", data_dir=tmp_path, url=down)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert failed.stderr.startswith("Error: cannot use the database postgresql://rm@127.0.0.1:1/"), failed.stderr
    assert "s3cret-pw" not in failed.stderr

    bad = rm("host", "list", "--database", "mysql://x", data_dir=tmp_path)
    assert bad.returncode == 2 and "--database" in bad.stderr and "postgresql://" in bad.stderr


def test_backup_db_on_postgresql_says_to_use_pg_dump(tmp_path):
    # nothing listens on port 1: the answer comes without connecting
    done = rm("backup-db", str(tmp_path / "copy.db"), data_dir=tmp_path, url="postgresql://rm@127.0.0.1:1/rm")
    assert done.returncode == 1 and "pg_dump" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "copy.db").exists()
