"""An agent killed mid-backup (SIGKILL to agent and restic, as systemd's stop timeout or
the OOM killer on the service's cgroup do) leaves restic's lock; the agent's next start
removes it without anyone running unlock (item 12). Real server, agent and restic."""

from __future__ import annotations

import ctypes
import json
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.test_agent_e2e import (
    PASSWORD, E2EServer, Repo, e2e_server, enroll_agent, init_done, job_end, make_group, slow_source, wait_until,
)

pytestmark = pytest.mark.e2e
__all__ = ["e2e_server"]  # the fixture, imported for pytest


async def test_agent_start_removes_the_lock_its_killed_restic_left(e2e_server: E2EServer, tmp_path: Path) -> None:
    srv = e2e_server
    path = tmp_path / "repo-local"
    repo = Repo(str(path), {"url": str(path), "password": PASSWORD}, {"RESTIC_REPOSITORY": str(path)})
    host_id, agent = await enroll_agent(srv, repo, tmp_path)
    try:
        await init_done(srv, host_id)
        await srv.call("PUT", f"/hosts/{host_id}/bandwidth", json={"upload_kbps": 64})
        group = await make_group(srv, host_id, slow_source(tmp_path / "slow", files=40), "slow")
        _, body = await srv.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        job_id = body["job"]["id"]

        def locks() -> str:
            return repo.restic(tmp_path, "--no-lock", "list", "locks").stdout.strip()

        def backup_holding_a_lock() -> int | None:
            """The pid of the agent's `restic backup` once a lock of the repository is its own.
            Any lock would not do: a lock seen here may be another, short restic's (CI once saw
            one go before the kill, and the test proved nothing)."""
            for lock_id in locks().split():
                done = repo.restic(tmp_path, "--no-lock", "cat", "lock", lock_id)
                if done.returncode != 0:
                    continue  # removed since it was listed
                pid = json.loads(done.stdout)["pid"]
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue  # its process has ended
                if b"backup" in argv and pid in children(agent.proc.p.pid):
                    return int(pid)
            return None

        holder = await wait_until(backup_holding_a_lock, 30, "the backup's restic holding its lock")
        # systemd's stop timeout and the OOM killer SIGKILL the whole cgroup at once. restic runs
        # in its own session (so a cancel reaches only it), so killing the agent's process group
        # would spare it, and its PDEATHSIG SIGINT would then sometimes remove the lock first.
        # restic checks a lock's owner with kill(pid, 0), which a zombie passes: like systemd
        # (PID 1) on a real host, this test process adopts and reaps the orphans (this sandbox's
        # PID 1 reaps late, so the dead restic would look alive).
        set_subreaper(True)
        try:
            killed = children(agent.proc.p.pid)
            assert holder in killed
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            agent.kill(signal.SIGKILL)
            for pid in killed:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass  # the agent reaped it before it died itself
        finally:
            set_subreaper(False)
        assert locks(), "the killed restic left no lock; the test proves nothing"
        agent.start()
        job = await wait_until(lambda: job_end(srv, job_id), 45, "lost job reported")
        assert job["state"] == "lost", job
        await wait_until(lambda: not locks(), 30, "stale lock removed by the restarted agent")
        status, check = await srv.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "check"})
        assert status == 202, check
        check = await wait_until(lambda: job_end(srv, check["id"]), 60, "check finished")
        assert check["state"] == "succeeded", check
    finally:
        agent.kill(signal.SIGTERM)


def children(ppid: int) -> list[int]:
    """Processes whose parent is `ppid` (restic and hooks the agent started)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # it ended while we looked
            if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
                found.append(int(entry))
    return found


def set_subreaper(on: bool) -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphans of our descendants become our children."""
    assert ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, int(on), 0, 0, 0) == 0
