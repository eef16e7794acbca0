"""A backup the agent ran while the server was down keeps the agent's times (item 18)."""

from __future__ import annotations

from datetime import timedelta

from rm_core import protocol as p
from rm_core.ids import new_id
from tests.server.server_helpers import finished, job, now, online_host


async def test_agent_run_job_created_no_later_than_started(server):
    _, agent = await online_host(server)
    job_id = new_id()
    ran_at = now() - timedelta(hours=2)  # while the server was away
    await agent.send(p.JobStarted(job_id=job_id, started_at=ran_at, kind="check"))
    await agent.expect("ack")
    await agent.send(finished(job_id, 2, finished_at=ran_at + timedelta(minutes=5)))
    await agent.expect("ack")
    rec = await job(server, job_id)
    assert rec["created_at"] <= rec["started_at"] <= rec["finished_at"], rec
    assert rec["created_at"].startswith(ran_at.isoformat()[:16]), rec
