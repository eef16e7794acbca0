"""`rm-server operator …` / `rm-server host …`: an admin's work without the console."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rm_core.api import Host, Operator
from rm_server.keys import CONFIG
from tests.server.test_cli import Running

BIN = Path(sys.executable).parent


def rm(*args, data_dir, password=None):
    env = {**os.environ, "RM_DATA_DIR": str(data_dir)}
    env.pop("RM_OPERATOR_PASSWORD", None)
    if password is not None:
        env["RM_OPERATOR_PASSWORD"] = password
    return subprocess.run([str(BIN / "rm-server"), *args], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


def test_operator_lifecycle(tmp_path):
    d = tmp_path / "data"
    assert rm("operator", "add", "alice", "--role", "admin", data_dir=d, password="correct horse battery").returncode == 0
    assert rm("operator", "add", "bob", "--role", "viewer", data_dir=d, password="correct horse battery").returncode == 0
    out = rm("operator", "list", data_dir=d)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["alice", "admin", "active"] and lines[1].split() == ["bob", "viewer", "active"]

    assert rm("operator", "passwd", "bob", data_dir=d, password="another long password").returncode == 0
    assert rm("operator", "disable", "bob", data_dir=d).returncode == 0
    assert rm("operator", "list", data_dir=d).stdout.splitlines()[1].split()[2] == "disabled"
    assert rm("operator", "disable", "bob", "--enable", data_dir=d).returncode == 0
    assert rm("operator", "remove", "bob", data_dir=d).returncode == 0
    assert "bob" not in rm("operator", "list", data_dir=d).stdout

    last = rm("operator", "remove", "alice", data_dir=d)
    assert last.returncode == 1 and "last active admin" in last.stderr and "Traceback" not in last.stderr
    missing = rm("operator", "passwd", "nobody", data_dir=d, password="correct horse battery")
    assert missing.returncode == 1 and "no operator named 'nobody'" in missing.stderr
    short = rm("operator", "passwd", "alice", data_dir=d, password="x")
    assert short.returncode == 2 and "password" in short.stderr


def test_commands_on_a_wrong_data_dir_say_so(tmp_path):
    for args in (("operator", "list"), ("host", "list"), ("host", "remove", "h1")):
        out = rm(*args, data_dir=tmp_path / "nothing")
        assert out.returncode == 1 and "no database at" in out.stderr and "Traceback" not in out.stderr


def test_host_list_and_remove(tmp_path):
    d = tmp_path / "data"
    assert rm("operator", "add", "alice", "--role", "admin", data_dir=d, password="correct horse battery").returncode == 0
    assert rm("host", "list", data_dir=d).stdout.strip() == "no hosts enrolled yet"
    import asyncio

    from rm_server.store import SYSTEM, Store
    from rm_server.security import hash_token

    async def enroll() -> str:
        store = await Store.open(d / "server.db")
        try:
            from datetime import timedelta
            await store.enrollment.create(SYSTEM, hash_token("rme_t"), name="x", ttl=timedelta(hours=1), max_uses=1,
                                          initial_paths=[], repo_sealed=None)
            host_id, _ = await store.enrollment.enroll(hash_token("rme_t"), hash_token("rma_t"), hostname="web-1",
                                                       os="linux", arch="x86_64", agent_version="t")
            return host_id
        finally:
            await store.close()

    host_id = asyncio.run(enroll())
    out = rm("host", "list", data_dir=d)
    assert host_id in out.stdout and "web-1" in out.stdout
    assert rm("host", "remove", host_id, data_dir=d).returncode == 0
    assert host_id not in rm("host", "list", data_dir=d).stdout
    again = rm("host", "remove", host_id, data_dir=d)
    assert again.returncode == 1 and "Traceback" not in again.stderr


@pytest.mark.e2e
def test_bootstrap_token_file_goes_once_an_admin_exists(tmp_path):
    d = tmp_path / "data"
    srv = Running("--listen", "127.0.0.1:0", data_dir=d)
    try:
        assert (d / "bootstrap-token").exists()
        assert rm("operator", "add", "alice", "--role", "admin", data_dir=d,
                  password="correct horse battery").returncode == 0
        assert not (d / "bootstrap-token").exists()
    finally:
        srv.stop()


async def test_list_commands_print_json_as_the_rest_api_answers(server):
    """`--json` on the list commands: one JSON document, the same collection GET
    /api/v1/operators and GET /api/v1/hosts answer, read from the data dir a running server uses."""
    host_id, _ = await server.enroll("web-1")
    await server.enroll("db-1")
    printed: dict[str, list] = {}
    url = server.app[CONFIG].database_url  # the suite on PostgreSQL: the commands go there too
    where = ("--database", url) if url else ()
    for command, key, model in ((("operator", "list"), "operators", Operator), (("host", "list"), "hosts", Host)):
        out = await asyncio.to_thread(rm, *command, "--json", *where, data_dir=server.data_dir)
        assert out.returncode == 0, out.stderr
        printed[key] = [model.model_validate(item) for item in json.loads(out.stdout)[key]]
        status, answered = await server.call("GET", f"/{key}")
        # equal as models: the REST host list writes times as +00:00, pydantic as Z
        assert status == 200 and printed[key] == [model.model_validate(i) for i in answered[key]], command
    assert {h.hostname for h in printed["hosts"]} == {"web-1", "db-1"} and host_id in {h.id for h in printed["hosts"]}
    assert [o.username for o in printed["operators"]] == ["admin", "operator", "viewer"]


def test_list_commands_print_an_empty_collection_as_json(tmp_path):
    d = tmp_path / "data"
    assert rm("operator", "add", "alice", "--role", "admin", data_dir=d, password="correct horse battery").returncode == 0
    out = rm("host", "list", "--json", data_dir=d)
    assert out.returncode == 0 and json.loads(out.stdout) == {"hosts": []}
