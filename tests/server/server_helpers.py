"""Small builders the server tests share: an online host, a source group, a schedule, job events."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rm_core import protocol as p
from tests.conftest import TestAgent


def now() -> datetime:
    return datetime.now(timezone.utc)


async def online_host(server, hostname: str = "web-1", **connect_kw) -> tuple[str, TestAgent]:
    """Enroll a host and connect a protocol-level agent; returns after hello.ok + schedule.set + config.update."""
    host_id, token = await server.enroll(hostname)
    agent = TestAgent(server, token)
    ok = await agent.connect(**connect_kw)
    assert ok.type == "hello.ok", ok
    await agent.expect("schedule.set")
    await agent.expect("config.update")
    return host_id, agent


async def make_group(server, host_id: str, name: str = "etc", **body: Any) -> dict:
    body = {"name": name, "includes": ["/etc"], **body}
    status, group = await server.call("POST", f"/hosts/{host_id}/source-groups", role="operator", json=body)
    assert status == 201, group
    return group


async def make_schedule(server, host_id: str, group_ids: list[str], name: str = "nightly", **body: Any) -> dict:
    body = {"name": name, "cron": "0 3 * * *", "source_group_ids": group_ids, **body}
    status, schedule = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator", json=body)
    assert status == 201, schedule
    return schedule


def started(job_id: str, kind: str = "backup", **kw: Any) -> p.JobStarted:
    return p.JobStarted(job_id=job_id, started_at=now(), kind=kind, **kw)


def log(job_id: str, seqs, text: str = "line {seq}") -> p.JobLog:
    return p.JobLog(job_id=job_id, lines=[p.LogLine(seq=s, ts=now(), text=text.format(seq=s)) for s in seqs])


def finished(job_id: str, seq: int, state: str = "succeeded", exit_code: int = 0, **kw: Any) -> p.JobFinished:
    return p.JobFinished(job_id=job_id, seq=seq, state=state, exit_code=exit_code, **kw)


async def job(server, job_id: str) -> dict:
    status, body = await server.call("GET", f"/jobs/{job_id}")
    assert status == 200, body
    return body


async def dump_database(store) -> str:
    """Every row of every table as text, whichever backend: for checks that a secret is stored nowhere."""
    tables_sql = ("SELECT name FROM sqlite_master WHERE type = 'table'" if store.db.dialect.name == "sqlite"
                  else "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    out = []
    for (table,) in await store.db.fetchall(tables_sql):
        for row in await store.db.fetchall(f'SELECT * FROM "{table}"'):
            out.append(f"{table}: {tuple(row)!r}")
    return "\n".join(out)


async def database_bytes(store) -> int:
    """How much room the database takes (SQLite: the file and its WAL; PostgreSQL: the database)."""
    import os

    if store.db.dialect.name == "sqlite":
        path = store.db.where
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    return (await store.db.fetchall("SELECT pg_database_size(current_database())"))[0][0]
