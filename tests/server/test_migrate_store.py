"""`rm-server migrate-store` (issue 19): a SQLite server's data, every table of it, copied into
PostgreSQL and served from there as it was; a non-empty target, a running source, a source of
another schema and a copy that reads back differently are refused, and nothing is left half done.

The source is a real server on SQLite (whatever backend the rest of the run uses), filled through
its API and a protocol-level agent; the target a real throwaway PostgreSQL cluster's database;
migrate-store runs as the real command."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from rm_core import protocol as p
from rm_core.ids import new_id
from rm_server.store import Store
from rm_server.store.db import migrations
from rm_server.store.migrate_store import COPIED, SKIPPED, expected_schema
from tests.conftest import ADMIN_PASSWORD, FakeClock, Server, TestAgent, sign_in_roles, start_server, wait_for
from tests.server.server_helpers import finished, log, make_group, make_schedule, now, online_host, started

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MiB = 1 << 20


def migrate_store(data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it: the URL in RM_DATABASE_URL, not on the command line."""
    env = {**os.environ, "RM_DATABASE_URL": url}
    return subprocess.run([str(BIN / "rm-server"), "migrate-store", "--from-data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


def rows_of(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


async def sqlite_server(base: Path) -> tuple[Any, Server]:
    """A real server on SQLite in `base`/data, an admin, an operator and a viewer signed in."""
    clock = FakeClock()
    runner, url, app = await start_server(base, clock, database_url=None, alert_group_wait=0.2)
    srv = Server(url, app, aiohttp.ClientSession(), base / "data", clock)
    await sign_in_roles(srv)
    return runner, srv


async def backup(srv: Server, agent: Any, host_id: str, group_id: str, changed: int, size: int, lines: int = 3) -> str:
    """One backup as the agent reports it: stats, start, log lines, the end with a summary."""
    job_id = new_id()
    await agent.send(p.RepoStats(total_size=size, snapshots_count=1))
    await agent.send(started(job_id, source_group_id=group_id))
    await agent.send(log(job_id, range(2, lines + 2), text="processed {seq} files\x00 (NUL as an agent sent it)"))
    srv.clock.advance(3600)
    summary = {"files_new": changed // 4, "files_changed": changed - changed // 4, "data_added": MiB,
               "total_files_processed": 1000, "total_duration": 12.5, "snapshot_id": "ab" * 4}
    await agent.send(finished(job_id, lines + 2, summary=summary, finished_at=srv.clock.now))

    async def judged() -> bool:
        _, history = await srv.call("GET", f"/hosts/{host_id}/source-groups/{group_id}/history?limit=200",
                                    role="viewer")
        return any(r["job_id"] == job_id and r["repo_size"] == size for r in history["runs"])

    await wait_for(judged, what=f"backup {job_id} stored and judged")
    return job_id


async def fill(srv: Server) -> dict[str, Any]:
    """Rows in every table a server keeps, made the way the server makes them."""
    host_id, agent = await online_host(srv, "db-1", features=["query", "copy", "rotate_key"])
    await srv.call("POST", "/enrollment-tokens", json={"name": "spare"})
    status, _ = await srv.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                               json={"url": "rest:https://backup.example:8000/db-1/", "password": "repo-secret-1"})
    assert status == 200
    status, _ = await srv.call("PUT", f"/hosts/{host_id}/repo/copy", role="operator",
                               json={"url": "s3:https://offsite.example/db-1", "password": "copy-secret-2"})
    assert status == 200
    group = await make_group(srv, host_id, anomaly={"history": 5}, retention={"keep_last": 7})
    schedule = await make_schedule(srv, host_id, [group["id"]])
    status, _ = await srv.call("PUT", f"/hosts/{host_id}/source-groups/{group['id']}/drill", role="operator",
                               json={"cron": "0 4 * * 0", "sample_files": 3, "sample_mb": 2, "max_age_hours": 200})
    assert status == 200
    status, channel = await srv.call("POST", "/notification-channels", json={
        "name": "ops", "url": "json://127.0.0.1:9/hook", "events": ["backup.failed"]})
    assert status == 201, channel
    status, _ = await srv.call("PUT", "/settings", json={"webhook_url": "https://hooks.example/rm"})
    assert status == 200
    await agent.send(p.ScheduleFire(schedule_id=schedule["id"], scheduled_at=now(), fire_id="fire-1"))
    fired = (await agent.expect("command.run")).payload.job_id
    await agent.send(started(fired, source_group_id=group["id"]))
    await agent.send(finished(fired, 2))
    for i in range(5):
        await backup(srv, agent, host_id, group["id"], 100 + i, (10 + i) << 30)
    attacked = await backup(srv, agent, host_id, group["id"], 50_000, 20 << 30)
    status, rotation = await srv.call("POST", f"/hosts/{host_id}/repo/rotate-key", role="operator", json={})
    assert status == 202 and rotation["state"] == "adding", rotation  # its new password sealed in the row
    snap = {"id": "c" * 64, "time": now().isoformat(), "paths": ["/etc"], "tags": ["etc"]}
    await agent.send(p.SnapshotsReport(snapshots=[p.SnapshotInfo(**snap)]))
    await agent.send(p.CopyReport(snapshots=[p.SnapshotInfo(**snap)], stats=p.RepoStats(total_size=7 << 30)))
    await srv.store.host_alerts.mark_raised("host.offline", [host_id])

    async def reported() -> bool:
        _, snaps = await srv.call("GET", f"/hosts/{host_id}/snapshots", role="viewer")
        _, copy = await srv.call("GET", f"/hosts/{host_id}/repo/copy", role="viewer")
        return bool(snaps["snapshots"]) and "7516192768" in str(copy)

    await wait_for(reported, what="snapshots and the copy's report stored")
    await agent.close()
    await wait_for(lambda: _offline(srv, host_id), what="the host offline once its agent left")
    return {"host": host_id, "agent_token": agent.token, "group": group["id"], "schedule": schedule["id"], "attacked": attacked,
            "channel": channel["id"]}


async def _offline(srv: Server, host_id: str) -> bool:
    return (await srv.call("GET", f"/hosts/{host_id}", role="viewer"))[1]["status"] == "offline"


def views(ids: dict[str, Any]) -> list[str]:
    """What an operator reads of that data: each answer must be the same after the move."""
    h, g = ids["host"], ids["group"]
    return ["/operators", "/enrollment-tokens", "/settings", "/notification-channels", f"/hosts/{h}",
            f"/hosts/{h}/repo", f"/hosts/{h}/repo/copy", f"/hosts/{h}/source-groups", f"/hosts/{h}/schedules",
            f"/hosts/{h}/source-groups/{g}/drill", f"/hosts/{h}/snapshots", f"/hosts/{h}/anomalies",
            f"/hosts/{h}/source-groups/{g}/history?limit=50", f"/jobs?host_id={h}&limit=50",
            f"/jobs/{ids['attacked']}/logs", f"/hosts/{h}/repo/rotate-key", "/audit?limit=500"]


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON answers differ, by path (an empty list when they are equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys()) for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


async def read_all(srv: Server, ids: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for path in views(ids):
        status, body = await srv.call("GET", path)
        assert status == 200, (path, body)
        out[path] = body
    return out


async def test_every_table_moves_and_the_server_on_postgresql_answers_as_before(tmp_path, pg_cluster):
    # every table this rm-server makes has a rule: copied, or skipped with a reason
    tables = set(expected_schema())
    assert tables == COPIED | set(SKIPPED), f"tables without a copy rule: {sorted(tables - COPIED - set(SKIPPED))}"

    runner, old = await sqlite_server(tmp_path / "old")
    try:
        ids = await fill(old)
        before = await read_all(old, ids)
    finally:
        await old.http.close()
        await runner.cleanup()
    source = sqlite3.connect(f"file:{old.data_dir / 'server.db'}?mode=ro", uri=True)
    try:
        empty = [t for t in sorted(COPIED) if not source.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]]
        (source_audit_max,) = source.execute("SELECT max(id) FROM audit").fetchone()
        (nul_lines,) = source.execute("SELECT count(*) FROM job_logs WHERE instr(text, char(0)) > 0").fetchone()
    finally:
        source.close()
    assert empty == [], f"the test data leaves these tables empty, so their copy is untested: {empty}"

    url = pg_cluster.create_database(f"m{new_id().lower()}")
    done = migrate_store(old.data_dir, url)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for table in COPIED:
        assert lines[table].split()[-1] == "ok", lines[table]
    for table in SKIPPED:
        assert "not copied" in lines[table]
    assert nul_lines > 0 and f"{nul_lines} rows held a NUL character in text" in done.stdout, done.stdout
    assert f"audit.id continues after {source_audit_max}" in done.stdout
    assert "--master-key-file" in done.stdout and str(old.data_dir / "master.key") in done.stdout
    for table in COPIED:
        assert rows_of(url, f'SELECT count(*) FROM "{table}"')[0][0] > 0, table

    # a server on PostgreSQL, given the old master key, serves the same data
    clock = FakeClock()
    clock.now = old.clock.now  # answers that depend on the time (a schedule's next run) read the same
    runner, url_new, app = await start_server(tmp_path / "new", clock, database_url=url,
                                              master_key_file=old.data_dir / "master.key")
    new = Server(url_new, app, aiohttp.ClientSession(), tmp_path / "new" / "data", clock)
    try:
        new.tokens.update(old.tokens)  # sessions moved too: nobody signs in again
        after = await read_all(new, ids)
        for path in views(ids):
            # PostgreSQL text holds no NUL: the log lines' NUL is U+FFFD, as a server on PostgreSQL stores it
            expected = json.loads(json.dumps(before[path]).replace("\\u0000", "\\ufffd"))
            assert differences(expected, after[path]) == [], path
        # the password still opens the account; the agent's token is still good, and the credentials
        # sealed under the master key open on the new server (the agent is sent them)
        assert await new.login("admin", ADMIN_PASSWORD)
        agent = TestAgent(new, ids["agent_token"])
        assert (await agent.connect(features=["query", "copy", "rotate_key"])).type == "hello.ok"
        update = await agent.expect("config.update")
        assert {c.slot: c.password for c in update.payload.credentials} == {"repo": "repo-secret-1",
                                                                            "copy": "copy-secret-2"}
        await agent.close()
        # a new audit entry continues after the copied ones
        status, _ = await new.call("POST", "/enrollment-tokens", json={"name": "after the move"})
        assert status == 201
        (top,) = rows_of(url, "SELECT max(id) FROM audit")[0]
        assert top > source_audit_max and rows_of(url, "SELECT count(*) FROM audit WHERE id = %s", (top,))[0][0] == 1
    finally:
        await new.http.close()
        await runner.cleanup()


async def test_a_target_with_rows_is_refused_naming_them(tmp_path, pg_cluster):
    runner, old = await sqlite_server(tmp_path / "old")
    await old.http.close()
    await runner.cleanup()
    url = pg_cluster.create_database(f"m{new_id().lower()}")
    # a server that ran on the target once: it wrote its settings and a replica row
    runner, _, _ = await start_server(tmp_path / "other", FakeClock(), database_url=url)
    await runner.cleanup()
    done = migrate_store(old.data_dir, url)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "is not empty: " in done.stderr and "settings (" in done.stderr, done.stderr
    assert "drop and create it again" in done.stderr

    with psycopg.connect(pg_cluster.create_database(f"f{new_id().lower()}"), autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
        foreign = conn.info.dbname
    done = migrate_store(old.data_dir, pg_cluster.url(foreign))
    assert done.returncode == 1 and "tables rm-server does not make (invoices)" in done.stderr, done.stderr


async def test_a_running_server_is_refused_and_a_copy_that_reads_back_differently_is_rolled_back(tmp_path, pg_cluster):
    runner, old = await sqlite_server(tmp_path / "old")
    try:
        await old.enroll("web-1")
        url = pg_cluster.create_database(f"m{new_id().lower()}")
        running = migrate_store(old.data_dir, url)
        assert running.returncode == 1, running.stdout
        assert "is in use" in running.stderr and "Stop it first" in running.stderr, running.stderr
        assert rows_of(url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")[0][0] == 0
    finally:
        await old.http.close()
        await runner.cleanup()

    # a target that changes what it is given (here a trigger): the checksum finds it, nothing stays
    store = await Store.open(url)
    await store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION mangle() RETURNS trigger AS $$ BEGIN NEW.hostname := upper(NEW.hostname);"
                     " RETURN NEW; END $$ LANGUAGE plpgsql")
        conn.execute("CREATE TRIGGER mangle BEFORE INSERT ON hosts FOR EACH ROW EXECUTE FUNCTION mangle()")
    done = migrate_store(old.data_dir, url)
    assert done.returncode == 1, done.stdout
    (hosts_line,) = [line for line in done.stdout.splitlines() if line.startswith("hosts ")]
    assert "MISMATCH" in hosts_line, done.stdout
    assert [line.split()[0] for line in done.stdout.splitlines() if "MISMATCH" in line] == ["hosts"]
    assert "differs from the source in hosts; nothing was committed" in done.stderr, done.stderr
    assert rows_of(url, "SELECT count(*) FROM hosts")[0][0] == 0
    assert rows_of(url, "SELECT count(*) FROM operators")[0][0] == 0


def test_a_source_of_another_schema_is_refused(tmp_path, pg_cluster):
    url = pg_cluster.create_database(f"m{new_id().lower()}")
    known = migrations("sqlite")
    older = tmp_path / "older"
    older.mkdir()
    conn = sqlite3.connect(older / "server.db", isolation_level=None)
    for _, _, sql in known[:-1]:
        conn.executescript(sql)
    conn.close()
    done = migrate_store(older, url)
    assert done.returncode == 1 and f"schema version {len(known) - 1}, this rm-server's is {len(known)}" in done.stderr
    assert "start this rm-server on the data dir once" in done.stderr

    changed = tmp_path / "changed"
    changed.mkdir()
    conn = sqlite3.connect(changed / "server.db", isolation_level=None)
    for _, _, sql in known:
        conn.executescript(sql)
    conn.execute("ALTER TABLE hosts ADD COLUMN colour TEXT")
    conn.close()
    done = migrate_store(changed, url)
    assert done.returncode == 1 and "hosts.colour is not rm-server's" in done.stderr, done.stderr

    done = migrate_store(tmp_path / "nothing", url)
    assert done.returncode == 1 and "no database at" in done.stderr
    assert not (tmp_path / "nothing").exists(), "looking for the source made nothing"
    assert rows_of(url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")[0][0] == 0
