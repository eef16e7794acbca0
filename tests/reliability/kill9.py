"""kill -9 the server again and again while agents stream job logs; then check every job.

A real rm-server process on a fixed port, killed with SIGKILL and restarted `cycles`
times. Protocol-level agents (in this process, so they survive every server death) each
run agent-minted jobs of `lines` log lines, sent in small batches without waiting for
acks, and behave as rm-agent's outbox does: everything not acked is sent again after a
reconnect, the running job named in hello. At the end every job must hold its whole log
(every seq once, right text), one terminal state, and the database must pass
`PRAGMA integrity_check`. Used by tests/reliability/test_kill9_loop.py (short) and
bench/kill9_loop.py (long).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rm_core import protocol as p
from rm_core.ids import new_id
from rm_core.times import utcnow
from rm_core.version import PROTOCOL_VERSION
from tests.processes import free_port

BIN = Path(sys.executable).parent
ADMIN_PASSWORD = "correct horse battery"
BATCH = 20


class ServerProc:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    async def start(self, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "rm-server"), "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"rm-server did not come up (exit {self.proc.poll()})")
                await asyncio.sleep(0.05)  # polling a child process's port with a deadline

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)


@dataclass
class SimJob:
    job_id: str
    lines: int
    started_acked: bool = False
    acked: int = 0  # highest seq the server acked (1 = job.started)
    finished_acked: bool = False

    def text(self, seq: int) -> str:
        return f"{self.job_id} line {seq}"


@dataclass
class SimAgent:
    """An agent whose outbox survives every server death (it lives in the test process)."""

    url: str
    token: str
    lines_per_job: int
    jobs: list[SimJob] = field(default_factory=list)
    connects: int = 0
    stop_new_jobs: bool = False

    @property
    def current(self) -> SimJob | None:
        return self.jobs[-1] if self.jobs and not self.jobs[-1].finished_acked else None

    async def run(self, http: aiohttp.ClientSession, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                await self._session(http, done)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ConnectionError):
                pass
            if not done.is_set():
                await asyncio.sleep(0.05)  # reconnect backoff while the server restarts

    async def _session(self, http: aiohttp.ClientSession, done: asyncio.Event) -> None:
        async with http.ws_connect(f"{self.url}/api/v1/agent/ws", headers={"Authorization": f"Bearer {self.token}"},
                                   heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=1)) as ws:
            running = [self.current.job_id] if self.current else []
            await ws.send_str(p.encode(p.message(p.Hello(
                protocol_version=PROTOCOL_VERSION, agent_version="kill9", hostname="sim", running_jobs=running))))
            self.connects += 1
            reader = asyncio.ensure_future(self._read(ws))
            try:
                while not done.is_set():
                    job = self.current
                    if job is None:
                        if self.stop_new_jobs:
                            if reader.done():
                                return
                            await asyncio.wait({reader}, timeout=0.1)
                            continue
                        job = SimJob(new_id(), self.lines_per_job)
                        self.jobs.append(job)
                    await self._send_unacked(ws, job)
                    # Wait for acks (or the socket to die) before sending the next window.
                    await asyncio.wait({reader}, timeout=0.02)
                    if reader.done():
                        return
            finally:
                reader.cancel()

    async def _send_unacked(self, ws, job: SimJob) -> None:
        if not job.started_acked:
            await ws.send_str(p.encode(p.message(p.JobStarted(job_id=job.job_id, started_at=utcnow(), kind="check"))))
            return
        if job.acked < job.lines + 1:
            first = job.acked + 1
            last = min(job.lines + 1, first + BATCH - 1)
            await ws.send_str(p.encode(p.message(p.JobLog(job_id=job.job_id, lines=[
                p.LogLine(seq=s, ts=utcnow(), text=job.text(s)) for s in range(first, last + 1)]))))
            return
        await ws.send_str(p.encode(p.message(p.JobFinished(
            job_id=job.job_id, seq=job.lines + 2, state="succeeded", exit_code=0, finished_at=utcnow()))))

    async def _read(self, ws) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            env = p.parse_server_message(msg.data)
            if env.type != "ack":
                continue
            for job in self.jobs:
                if job.job_id == env.payload.job_id:
                    upto = env.payload.upto_seq
                    job.started_acked = job.started_acked or upto >= 1
                    job.acked = max(job.acked, upto)
                    if upto >= job.lines + 2:
                        job.finished_acked = True


async def _api(http: aiohttp.ClientSession, url: str, method: str, path: str, token: str | None = None,
               **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, f"{url}/api/v1{path}", headers=headers, **kw) as r:
        return r.status, await r.json()


def second_process(data: Path, copy: Path, cycle: int) -> None:
    """The admin's commands on the live data dir: `operator list` or `backup-db`, by turns."""
    args = (["operator", "list"] if cycle % 2 else ["backup-db", str(copy)]) + ["--data-dir", str(data)]
    done = subprocess.run([str(BIN / "rm-server"), *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


async def run_loop(tmp: Path, cycles: int = 20, hosts: int = 4, lines_per_job: int = 120,
                   lines_per_cycle: int = 150) -> dict[str, Any]:
    """Run the loop; returns figures. Raises AssertionError on any lost or doubled line."""
    data = tmp / "server-data"
    server = ServerProc(data, free_port())
    await server.start()
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        boot = (data / "bootstrap-token").read_text().strip()
        status, _ = await _api(http, server.url, "POST", "/auth/bootstrap",
                               json={"token": boot, "username": "admin", "password": ADMIN_PASSWORD})
        assert status == 201
        _, body = await _api(http, server.url, "POST", "/auth/login",
                             json={"username": "admin", "password": ADMIN_PASSWORD})
        admin = body["token"]
        agents = []
        for i in range(hosts):
            _, tok = await _api(http, server.url, "POST", "/enrollment-tokens", admin, json={})
            status, enrolled = await _api(http, server.url, "POST", "/agents/enroll", json={
                "token": tok["token"], "hostname": f"sim-{i}", "os": "linux", "arch": "x86_64",
                "agent_version": "kill9"})
            assert status == 201, enrolled
            agents.append(SimAgent(server.url, enrolled["agent_token"], lines_per_job))
        done = asyncio.Event()
        tasks = [asyncio.create_task(a.run(http, done)) for a in agents]

        def acked_lines() -> int:
            return sum(j.acked for a in agents for j in a.jobs)

        try:
            for cycle in range(cycles):
                target = acked_lines() + lines_per_cycle
                deadline = time.monotonic() + 30
                while acked_lines() < target:  # logs in flight: the agents are mid-stream
                    assert time.monotonic() < deadline, "agents made no progress"
                    await asyncio.sleep(0.01)
                # A second process opens the live database every cycle (issue 18 item 1: one
                # such read once cost the server its WAL and writes it had acknowledged):
                # by turns while the server runs and while it is down.
                if cycle % 2:
                    await asyncio.to_thread(second_process, data, tmp / f"copy-{cycle}.db", cycle // 2)
                server.kill(signal.SIGKILL)
                if not cycle % 2:
                    await asyncio.to_thread(second_process, data, tmp / f"down-{cycle}.db", cycle // 2)
                await server.start()
            for a in agents:
                a.stop_new_jobs = True
            deadline = time.monotonic() + 60
            while any(a.current for a in agents):
                assert time.monotonic() < deadline, "jobs did not finish after the last restart"
                await asyncio.sleep(0.02)
        finally:
            done.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        jobs = [j for a in agents for j in a.jobs]
        for job in jobs:
            status, rec = await _api(http, server.url, "GET", f"/jobs/{job.job_id}", admin)
            assert status == 200, rec
            assert rec["state"] == "succeeded" and rec["finished_at"], rec
            got, after = [], 0
            while True:
                _, page = await _api(http, server.url, "GET", f"/jobs/{job.job_id}/logs?after_seq={after}&limit=1000",
                                     admin)
                if not page["lines"]:
                    break
                got += [(ln["seq"], ln["text"]) for ln in page["lines"]]
                after = page["next_seq"]
            want = [(s, job.text(s)) for s in range(2, job.lines + 2)]
            assert got == want, f"job {job.job_id}: {len(got)} lines, first difference at " \
                                f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), len(got))}"
    elapsed = time.monotonic() - started
    server.kill(signal.SIGTERM)
    with sqlite3.connect(data / "server.db") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok", integrity
    return {"cycles": cycles, "hosts": hosts, "jobs": len(jobs), "lines": sum(j.lines for j in jobs),
            "reconnects": sum(a.connects for a in agents), "seconds": round(elapsed, 1),
            "seconds_per_cycle": round(elapsed / max(1, cycles), 2), "integrity_check": integrity}
