"""`rm-server serve --database URL --workers 2` (rm_server/workers.py) as a real process on a
throwaway PostgreSQL: two children, each a replica, serve one port; a child killed with -9 is
started again while the other keeps the port answering; SIGTERM to the parent stops them all.
The children take the parent's flags: with --proxy-protocol each reads the balancer's header."""

from __future__ import annotations

import os
import signal
import ssl
import sys
from pathlib import Path

import pytest

from rm_core.ids import new_id
from tests.e2e.test_proxy_protocol import sign_in_fails, v2
from tests.processes import Proc, free_port, until

BIN = Path(sys.executable).parent


def stat_of(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command's name (state, ppid, ...); None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def running(pid: int) -> bool:
    fields = stat_of(pid)
    return fields is not None and fields[0] != "Z"


def children_of(pid: int) -> set[int]:
    return {int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and (fields := stat_of(int(e.name))) and int(fields[1]) == pid and fields[0] != "Z"}


def live_replicas(url: str) -> int:
    """Replicas with a coordination session open (each holds its advisory lock on it)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(DISTINCT application_name) FROM pg_stat_activity"
                           " WHERE application_name LIKE %s", ("% cluster %",)).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.e2e
def test_two_workers_share_a_port_and_a_killed_one_comes_back(tmp_path, pg_cluster):
    url = pg_cluster.create_database(f"w{new_id().lower()}")
    port = free_port()
    data = tmp_path / "data"
    parent = Proc([str(BIN / "rm-server"), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                   "--self-signed", "--database", url, "--workers", "2",
                   "--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
    try:
        parent.wait_line(rf"rm-server listening on https://127\.0\.0\.1:{port} \(2 workers\)")
        workers = children_of(parent.p.pid)
        assert len(workers) == 2
        until(lambda: live_replicas(url) == 2, "two replicas in the database")
        ctx = ssl.create_default_context(cafile=str(data / "tls-cert.pem"))
        ctx.check_hostname = False
        assert sign_in_fails(port, ctx, v2("203.0.113.5"), username="before") == 401
        parent.wait_line(r"sign-in failed for 'before' from 203\.0\.113\.5 ")  # a child read the header

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        parent.wait_line(r"worker \d exited with -9; starting it again")
        for i in range(10):  # the other child answers meanwhile
            assert sign_in_fails(port, ctx, v2("203.0.113.6"), username=f"meanwhile-{i}") == 401
        again = until(lambda: (now := children_of(parent.p.pid)) - workers and len(now) == 2 and now,
                      "a new child in the killed one's place")
        assert killed not in again and len(again & workers) == 1
        until(lambda: live_replicas(url) == 2, "two replicas again")

        os.kill(parent.p.pid, signal.SIGTERM)  # the parent alone: it stops its children
        parent.p.wait(30)
        assert parent.p.returncode == 0
        assert not [pid for pid in again if running(pid)]
    finally:
        parent.stop()
