"""Limits on what an agent host can make the server store or show (items 6 and 10)."""

from __future__ import annotations

import asyncio
import os

from rm_core import protocol as p
from rm_core.bounds import MAX_LOG_LINE
from rm_core.ids import new_id
from rm_server.services.agent_messages import MINTED_JOBS_PER_HOUR
from tests.conftest import wait_for
from tests.server.server_helpers import database_bytes, now, online_host, started

MIB = 1024 * 1024


async def test_huge_log_lines_are_cut_and_log_pages_capped_in_bytes(server):
    """60 lines of 1 MiB: each is stored cut to the line cap, the database grows by well
    under a megabyte per line, and a viewer's page is capped in bytes."""
    _, agent = await online_host(server)
    job_id = new_id()
    await agent.send(started(job_id, kind="check"))
    await agent.expect("ack")
    before = await database_bytes(server.store)
    big = "A" * MIB
    for first in range(2, 62, 3):  # 3 lines a frame: each frame stays under the 4 MiB socket cap
        await agent.ws.send_str(p.encode(p.message(p.JobLog.model_construct(job_id=job_id, lines=[
            p.LogLine.model_construct(seq=s, ts=now(), stream="stdout", text=big) for s in range(first, first + 3)]))))
        env = await agent.expect("ack", "error")
        assert env.type == "ack", env
    grown = await database_bytes(server.store) - before
    assert grown < 6 * MIB, f"database grew {grown / MIB:.1f} MiB for 60 lines"
    status, page = await server.call("GET", f"/jobs/{job_id}/logs?limit=10000", role="viewer")
    assert status == 200
    assert all(len(ln["text"]) <= MAX_LOG_LINE for ln in page["lines"])
    assert page["lines"][0]["text"].endswith("[truncated]")
    assert sum(len(ln["text"]) for ln in page["lines"]) <= 1.1 * MIB


async def test_agent_minted_jobs_are_capped_per_host_per_hour(server):
    _, agent = await online_host(server)
    accepted = refused = 0
    for _ in range(MINTED_JOBS_PER_HOUR + 5):
        await agent.send(started(new_id(), kind="check"))
        env = await agent.expect("ack", "error")
        if env.type == "ack":
            accepted += 1
        else:
            assert env.payload.code == "rate_limited", env
            refused += 1
    assert accepted == MINTED_JOBS_PER_HOUR and refused == 5
    # Another host is not affected.
    _, other = await online_host(server, "web-2")
    await other.send(started(new_id(), kind="check"))
    assert (await other.expect("ack", "error")).type == "ack"


async def test_progress_only_for_the_senders_own_jobs(server):
    """An agent cannot paint progress on another host's job for the operators."""
    victim_id, victim = await online_host(server, "victim")
    _, hostile = await online_host(server, "hostile")
    job_id = new_id()
    await victim.send(started(job_id, kind="check"))
    await victim.expect("ack")
    ev = await server.http.ws_connect(server.api("/events"), headers=server.auth("operator"))
    await hostile.send(p.JobProgress(job_id=job_id, percent=99.0, bytes_done=1))
    env = await hostile.expect("error")
    assert env.payload.code == "unknown_job"
    await victim.send(p.JobProgress(job_id=job_id, percent=42.0))
    frames = []
    while True:
        msg = await ev.receive_json(timeout=5)
        if msg["type"] == "job.progress":
            frames.append(msg["payload"])
            if msg["payload"]["percent"] == 42.0:
                break
    assert [f["percent"] for f in frames] == [42.0] and frames[0]["host_id"] == victim_id
    await ev.close()


async def test_a_jobs_log_is_capped_in_bytes_keeping_head_and_newest(server):
    jobs = server.store.jobs
    jobs.log_head, jobs.log_bytes = 10, 256 * 1024  # small limits, same rule as the defaults
    _, agent = await online_host(server)
    job_id = new_id()
    await agent.send(started(job_id, kind="check"))
    await agent.expect("ack")
    line = "L" * 8000
    for first in range(2, 202, 50):
        await agent.send(p.JobLog(job_id=job_id, lines=[
            p.LogLine(seq=s, ts=now(), text=f"{s:05d}{line}") for s in range(first, first + 50)]))
        await agent.expect("ack")
    status, page = await server.call("GET", f"/jobs/{job_id}/logs?limit=10000", role="viewer")
    kept = [ln["seq"] for ln in page["lines"]]
    stored = sum(len(ln["text"]) for ln in page["lines"])
    assert stored <= 256 * 1024 + 8100, stored
    assert kept[:10] == list(range(2, 12)) and kept[-1] == 201  # the head and the newest line
    rec = (await server.call("GET", f"/jobs/{job_id}"))[1]
    assert rec["log_dropped"] == 200 - len(kept)
