"""A fleet written straight into the server's database: N hosts, their agent tokens and
finished jobs. Enrolling 19k hosts over REST would only measure token minting, not what
the fleet benches are about. The rows go in through the store's own backend-neutral
Database (its migrations build the schema first), so one path seeds a SQLite data dir and
a PostgreSQL database alike; `query` reads either back for the benches' cross-checks."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from rm_core.ids import new_id


def target_of(data_dir: Path, database: str | None = None) -> str | Path:
    """What the server opens: the PostgreSQL URL, or the data dir's SQLite file."""
    return database or data_dir / "server.db"


def prepare_db(data_dir: Path, n: int, jobs_per_host: int = 2, database: str | None = None) -> list[tuple[str, str]]:
    """Let the server's migrations build the schema, then write hosts, tokens and jobs (into
    `database`, a postgresql:// URL, when given). Returns (host id, agent token) per host."""
    base = datetime.now(timezone.utc) - timedelta(days=2)
    created = base.isoformat(timespec="microseconds")
    hosts, tokens, jobs, creds = [], [], [], []
    ms0 = int(base.timestamp() * 1000)
    for i in range(n):
        hid = new_id(ms0 + i)  # distinct, sortable ids
        tok = "rma_" + secrets.token_urlsafe(32)
        creds.append((hid, tok))
        hosts.append((hid, f"bench-{i:05d}", "offline", "linux", "x86_64", "bench", created))
        tokens.append((hashlib.sha256(tok.encode()).hexdigest(), hid, created))
    for j in range(n * jobs_per_host):
        hid = creds[j % n][0]
        t = base + timedelta(seconds=j)
        ts = t.isoformat(timespec="microseconds")
        jobs.append((new_id(ms0 + 10_000_000 + j), hid, "backup", "succeeded", "schedule", ts, ts, ts, 0))

    def insert(conn) -> None:  # in the writer's thread, one transaction
        conn.executemany("INSERT INTO hosts (id, hostname, status, os, arch, agent_version, created_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", hosts)
        conn.executemany("INSERT INTO agent_tokens (token_hash, host_id, created_at) VALUES (?, ?, ?)", tokens)
        conn.executemany("INSERT INTO jobs (id, host_id, kind, state, actor_kind, created_at, started_at,"
                         " finished_at, exit_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", jobs)

    async def seed() -> None:
        from rm_server.store.backends import open_database

        db = await open_database(target_of(data_dir, database), "rm-bench seed")
        try:
            await db.write_in_thread(insert)
        finally:
            await db.close()

    asyncio.run(seed())
    return creds


def query(target: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Rows of one read-only query (? placeholders, as the store writes them) on the database
    a server runs on, from a connection of its own."""
    if str(target).startswith("postgresql://"):
        from rm_server.store.postgres import translate

        conn = _pg_conn(str(target))
        return conn.execute(translate(sql), params).fetchall()
    con = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


_PG: dict[str, Any] = {}  # one connection per database for the bench's reads: the kill phase polls


def _pg_conn(url: str) -> Any:
    import psycopg

    conn = _PG.get(url)
    if conn is None or conn.closed:
        conn = _PG[url] = psycopg.connect(url, autocommit=True, application_name="rm-bench")
    return conn


def prepare_main(data_dir: str, n: int, out_q) -> None:
    """A child process's entry: prepare_db there, the credentials back on out_q (tui_scale
    seeds in a child so that the console's RSS is not inflated by server modules)."""
    out_q.put(prepare_db(Path(data_dir), n))


def prepare_in_child(ctx, data_dir: Path, n: int) -> list[tuple[str, str]]:
    """prepare_db in a child process of the multiprocessing context ctx; its credentials."""
    q = ctx.Queue()
    pr = ctx.Process(target=prepare_main, args=(str(data_dir), n, q))
    pr.start()
    creds = q.get(timeout=600)
    pr.join()
    return creds
